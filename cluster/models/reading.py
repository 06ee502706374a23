"""Reading models (OpenVINO IR, ONNX, TFLite) into ``ov.Model`` and writing them back as IR.

Every OpenVINO failure is translated into :class:`~cluster.errors.ModelError` naming the file, so
callers never see openvino's ``RuntimeError`` and its C++ source locations.

TFLite models are read through the TFLite frontend with the conversion extensions of
:mod:`cluster.models.formats`, so MediaPipe's custom ``Convolution2DTransposeBias`` op converts.
Those extensions carry parameters read from the very file being converted, so they are added to a
frontend made for that one read rather than to the shared ``ov.Core`` (where they would pile up,
one per model read, and race between threads reading different files).
"""

from __future__ import annotations

import re
from pathlib import Path

import openvino as ov

from cluster.errors import ModelError

SUFFIXES = {".xml": "OpenVINO IR", ".onnx": "ONNX", ".tflite": "TFLite"}

_SOURCE_LINE = re.compile(r"^(Exception from |Check '.*' failed at |\[ (GENERAL_ERROR|NOT_FOUND) \]\s*$)")


def describe_openvino_error(exc: BaseException) -> str:
    """openvino's message without the C++ file locations: the lines a person can act on."""
    lines = [line.strip() for line in str(exc).splitlines()]
    if "At:" in lines:  # a Python exception raised inside a frontend extension: drop its traceback
        lines = lines[: lines.index("At:")]
    kept = [line for line in lines if line and not _SOURCE_LINE.match(line)]
    text = " ".join(kept) or type(exc).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def read_model(core: ov.Core, model_path: Path, weights_path: Path | None = None) -> ov.Model:
    """Read an OpenVINO IR (``.xml`` + ``.bin``), ONNX or TFLite model.

    ``weights_path`` is only meaningful for IR; when it is not given the ``.bin`` next to the
    ``.xml`` is used.
    """
    model_path = Path(model_path)
    suffix = model_path.suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(sorted(SUFFIXES))
        raise ModelError(
            f"cannot read model {model_path.name}: unknown model format {suffix or '(no suffix)'!r}; "
            f"expected one of {known} (OpenVINO IR, ONNX, TFLite)",
            file=model_path.name,
        )
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} does not exist", file=model_path.name)
    if suffix == ".xml":
        weights = Path(weights_path) if weights_path is not None else model_path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelError(
                f"cannot read model {model_path.name}: its weights file {weights.name} is missing "
                "(an OpenVINO IR model is an .xml file plus a .bin file)",
                file=model_path.name,
            )
        return _read(lambda: core.read_model(str(model_path), str(weights)), model_path, "OpenVINO IR")
    if suffix == ".tflite":
        return _read(lambda: _read_tflite(model_path), model_path, "TFLite")
    return _read(lambda: core.read_model(str(model_path)), model_path, "ONNX")


def _read(reader, path: Path, kind: str) -> ov.Model:
    try:
        model = reader()
    except ModelError:
        raise
    except Exception as exc:  # openvino raises RuntimeError and frontend-specific failures
        raise ModelError(
            f"cannot read {kind} model {path.name}: {describe_openvino_error(exc)}", file=path.name
        ) from exc
    if not isinstance(model, ov.Model):  # frontend.convert() may hand back the bare pybind object
        model = ov.Model(model)
    return model


def _read_tflite(path: Path) -> ov.Model:
    from openvino.frontend import FrontEndManager

    from cluster.models.formats import conversion_extensions

    frontend = FrontEndManager().load_by_framework("tflite")
    for extension in conversion_extensions(path):
        frontend.add_extension(extension)
    return frontend.convert(frontend.load(str(path)))


def save_ir(model: ov.Model, directory: Path, name: str = "model") -> tuple[Path, Path]:
    """Write ``model`` as ``directory/name.xml`` + ``directory/name.bin`` in full precision."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    xml_path = directory / f"{name}.xml"
    try:
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as exc:
        raise ModelError(
            f"cannot save the model as OpenVINO IR in {directory}: {describe_openvino_error(exc)}"
        ) from exc
    return xml_path, xml_path.with_suffix(".bin")
