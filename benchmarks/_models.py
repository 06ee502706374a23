"""The models the throughput benchmark runs: zoo models and a tiny synthetic one.

Each comes as a :class:`BenchModel`: the IR files as the zoo builds them (no preprocessing in them;
the worker and :func:`engine` add it from ``preprocessing``), the script, labels, and the input
shape of the raw IR for ``benchmark_app``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from cluster.models.preprocessing import Preprocessing

MODELS = ("text-detection", "selfie-segmentation", "face-detection", "pose-detection", "layout-detection", "tiny")

TINY_SCRIPT = '''
def interpret(outputs, frame, labels, context):
    r, g, b = (float(v) for v in outputs["mean"].reshape(-1))
    return [{"type": "rectangle", "label": "1", "points": [0, 0, frame["width"] / 2, frame["height"] / 2],
             "score": 1.0, "attributes": {"red": round(r, 3)}}]
'''


@dataclass(frozen=True)
class BenchModel:
    name: str
    xml: Path
    bin: Path
    script_source: str
    labels: dict[str, str]
    preprocessing: Preprocessing
    input_shape: tuple[int, ...]  # of the raw IR
    threshold: float = 0.5  # the zoo entry's default: what every stage passes the script

    def script_module(self) -> ModuleType:
        """The script imported in this process (the naive baseline calls its interpret directly)."""
        path = self.xml.parent / "script_inprocess.py"
        path.write_text(self.script_source)
        spec = importlib.util.spec_from_file_location(f"bench_script_{self.name.replace('-', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def tiny_ir(directory: Path, size: int = 32) -> tuple[Path, Path]:
    """The mean colour per channel of a size x size NCHW image (opset13): almost no compute."""
    import openvino as ov
    from openvino import opset13 as ops

    image = ops.parameter([1, 3, size, size], np.float32, name="image")
    mean = ops.reduce_mean(image, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    mean.output(0).get_tensor().set_names({"mean"})
    model = ov.Model([mean], [image], "tiny")
    directory.mkdir(parents=True, exist_ok=True)
    xml = directory / "model.xml"
    ov.save_model(model, xml, compress_to_fp16=False)
    return xml, xml.with_suffix(".bin")


def build(name: str, workdir: Path, zoo_cache: Path) -> BenchModel:
    import openvino as ov

    workdir = Path(workdir) / name
    if name == "tiny":
        xml, bin_ = tiny_ir(workdir)
        return BenchModel(name, xml, bin_, TINY_SCRIPT, {"1": "thing"}, Preprocessing(width=32, height=32),
                          (1, 3, 32, 32))
    from cluster.zoo import get_entry
    from cluster.zoo.install import resolve_name

    artifacts = get_entry(resolve_name(name)).build(workdir, Path(zoo_cache))
    shape = tuple(int(d) for d in ov.Core().read_model(str(artifacts.model_xml)).inputs[0].get_shape())
    return BenchModel(name, artifacts.model_xml, artifacts.model_bin, artifacts.script_path.read_text(),
                      dict(artifacts.labels), artifacts.preprocessing, shape, artifacts.threshold)
