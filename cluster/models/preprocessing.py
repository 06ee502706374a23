"""Preprocessing folded into the model graph.

After :func:`apply_preprocessing` a model takes one ``uint8`` RGB image as ``[1, H, W, 3]`` (NHWC);
colour conversion, mean/scale normalisation and the layout change to what the model wants run
inside OpenVINO. So does the resize, of an image of any size, unless :func:`resizes_on_host` says
the worker's decoding threads resize it first (a known network size and a linear or nearest
resize: OpenCV's resize is an order of magnitude cheaper than OpenVINO's u8 Interpolate); the
graph then takes exactly the network's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import openvino as ov

from cluster.errors import InvalidInput, ModelError
from cluster.models.reading import describe_openvino_error

LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
RESIZES = ("linear", "nearest", "cubic")


@dataclass(frozen=True)
class Preprocessing:
    """How frames become model input.

    ``width``/``height``: the model's input size (``None``: the model's static input size).
    ``layout``: the model input's layout (``None``: inferred from the shape, the channels axis is
    the one of size 3 or 1). ``color``: the channel order the model expects. ``mean`` and ``scale``:
    ``(pixel - mean) / scale`` per channel (one value, or one per channel in the model's colour
    order) applied to 0..255 pixel values. ``resize``: interpolation.
    """

    width: int | None = None
    height: int | None = None
    layout: str | None = None
    color: str = "RGB"
    mean: list[float] | None = None
    scale: list[float] | None = None
    resize: str = "linear"

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                try:
                    as_int = int(value)
                except (TypeError, ValueError):
                    raise InvalidInput(f"preprocessing {name} must be a positive integer, got {value!r}") from None
                if as_int != value:
                    raise InvalidInput(f"preprocessing {name} must be a positive integer, got {value!r}")
                object.__setattr__(self, name, as_int)
            if getattr(self, name) < 1 or getattr(self, name) > 16384:
                raise InvalidInput(f"preprocessing {name} must be between 1 and 16384, got {value!r}")
        if self.layout is not None:
            layout = str(self.layout).upper()
            if layout not in LAYOUTS:
                raise InvalidInput(
                    f"preprocessing layout must be one of {', '.join(LAYOUTS)} or null, got {self.layout!r}"
                )
            object.__setattr__(self, "layout", layout)
        color = str(self.color).upper()
        if color not in COLORS:
            raise InvalidInput(f"preprocessing color must be one of {', '.join(COLORS)}, got {self.color!r}")
        object.__setattr__(self, "color", color)
        resize = str(self.resize).lower()
        if resize not in RESIZES:
            raise InvalidInput(f"preprocessing resize must be one of {', '.join(RESIZES)}, got {self.resize!r}")
        object.__setattr__(self, "resize", resize)
        for name in ("mean", "scale"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        if self.scale is not None and any(v == 0 for v in self.scale):
            raise InvalidInput("preprocessing scale values must not be 0 (pixels are divided by them)")

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "layout": self.layout,
            "color": self.color,
            "mean": None if self.mean is None else list(self.mean),
            "scale": None if self.scale is None else list(self.scale),
            "resize": self.resize,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Preprocessing:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInput(f"preprocessing must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown preprocessing field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
            )
        values = {k: v for k, v in data.items() if not (v is None and k in ("color", "resize"))}
        return cls(**values)

    # -- against a model -------------------------------------------------------------------------
    def resolved(self, model: ov.Model) -> Preprocessing:
        """This preprocessing with width, height and layout filled in from ``model``'s input."""
        image = _image_input(model)
        layout = self.layout or _infer_layout(image)
        height, width = _target_size(image, layout, self)
        return replace(self, width=width, height=height, layout=layout)


def _floats(name: str, value: Any) -> list[float] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        raise InvalidInput(
            f"preprocessing {name} must be a number or a list of 1 or 3 numbers, got {value!r}"
        ) from None
    if len(out) not in (1, 3):
        raise InvalidInput(f"preprocessing {name} must have 1 or 3 values, got {len(out)}")
    if any(v != v or v in (float("inf"), float("-inf")) for v in out):
        raise InvalidInput(f"preprocessing {name} values must be finite, got {value!r}")
    return out


def _image_input(model: ov.Model) -> ov.Output:
    inputs = list(model.inputs)
    if len(inputs) != 1:
        names = ", ".join(_port_name(p, i) for i, p in enumerate(inputs)) or "none"
        raise ModelError(
            f"the model must have exactly one input, an image; it has {len(inputs)} ({names})",
            inputs=len(inputs),
        )
    image = inputs[0]
    shape = image.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelError(
            f"the model's input {_port_name(image, 0)} must be a 4-D image tensor (NCHW or NHWC), it has shape {shape}"
        )
    return image


def _port_name(port: ov.Output, index: int) -> str:
    names = port.get_names()
    return sorted(names)[0] if names else f"#{index}"


def _dim(shape: ov.PartialShape, axis: int) -> int | None:
    d = shape[axis]
    return None if d.is_dynamic else int(d.get_length())


def _infer_layout(image: ov.Output) -> str:
    shape = image.get_partial_shape()
    c_first, c_last = _dim(shape, 1), _dim(shape, 3)
    first_ok, last_ok = c_first in (1, 3), c_last in (1, 3)
    if first_ok and not last_ok:
        return "NCHW"
    if last_ok and not first_ok:
        return "NHWC"
    if first_ok and last_ok:  # e.g. [1, 3, 3, 3]: conventions say NCHW unless told otherwise
        return "NCHW"
    raise ModelError(
        f"cannot tell the layout of the model input {_port_name(image, 0)} with shape {shape} "
        "(no axis 1 or 3 of size 3 or 1); set preprocessing layout to NCHW or NHWC"
    )


def _channels(image: ov.Output, layout: str) -> int:
    shape = image.get_partial_shape()
    channels = _dim(shape, 1 if layout == "NCHW" else 3)
    if channels not in (1, 3):
        raise ModelError(
            f"the model input {_port_name(image, 0)} with shape {shape} and layout {layout} has "
            f"{channels if channels is not None else 'a dynamic number of'} channels; an image input needs 3 or 1"
        )
    return channels


def _target_size(image: ov.Output, layout: str, prep: Preprocessing) -> tuple[int, int]:
    shape = image.get_partial_shape()
    h_axis, w_axis = (2, 3) if layout == "NCHW" else (1, 2)
    height = prep.height if prep.height is not None else _dim(shape, h_axis)
    width = prep.width if prep.width is not None else _dim(shape, w_axis)
    if height is None or width is None:
        raise ModelError(
            f"the model input {_port_name(image, 0)} has a dynamic size {shape}; "
            "set preprocessing width and height"
        )
    return height, width


def resizes_on_host(prep: Preprocessing) -> bool:
    """Whether frames for ``prep`` are best resized before inference rather than in the graph.

    OpenVINO's u8 Interpolate is the slowest step of this preprocessing: 640x480 to 736x736 took
    6-7 ms on one core (1920x1080: 10.5 ms), OpenCV's resize 0.5 ms (0.7 ms), with the same plain
    bilinear interpolation. So when the network size is known, linear and nearest resizing move to
    the decoding threads (``cluster.workers.decode.FrameDecoder``) and the graph takes the network
    size only. Cubic stays in the graph, in f32 (u8 cubic clamps its overshoot).
    """
    return bool(prep.width and prep.height and prep.resize in ("linear", "nearest"))


def apply_preprocessing(model: ov.Model, prep: Preprocessing, *, resize: bool = True) -> ov.Model:
    """A copy of ``model`` whose one input is a ``u8`` ``[1, H, W, 3]`` RGB image of any H and W;
    with ``resize=False``, of exactly the network's size (``prep.width`` x ``prep.height``): the
    caller resizes (see ``resizes_on_host``).

    The model itself is left untouched. Outputs keep their names. Linear and nearest resizing run
    on the ``u8`` frame, before anything else, so the model input is within half a pixel level
    of resizing in f32 (see the comment on the step order below).
    """
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    model = model.clone()
    image = _image_input(model)
    layout = prep.layout or _infer_layout(image)
    channels = _channels(image, layout)
    height, width = _target_size(image, layout, prep)

    shape = image.get_partial_shape()
    wanted = [1, channels, height, width] if layout == "NCHW" else [1, height, width, channels]
    if any(d.is_dynamic or int(d.get_length()) != w for d, w in zip(shape, wanted)):
        try:
            model.reshape({image: ov.PartialShape(wanted)})
        except Exception as exc:
            raise ModelError(
                f"the model input {_port_name(image, 0)} with shape {shape} cannot take a "
                f"{width}x{height} image ({layout} {wanted}): {describe_openvino_error(exc)}"
            ) from exc
        image = model.inputs[0]

    for name, values in (("mean", prep.mean), ("scale", prep.scale)):
        if values is not None and len(values) not in (1, channels):
            raise InvalidInput(
                f"preprocessing {name} has {len(values)} values but the model takes {channels} channel(s)"
            )

    if not resize and channels == 3 and (prep.mean is not None or prep.scale is not None):
        return _explicit_preprocessing(model, image, layout, prep, height, width)

    algorithm = {
        "linear": ResizeAlgorithm.RESIZE_LINEAR,
        "nearest": ResizeAlgorithm.RESIZE_NEAREST,
        "cubic": ResizeAlgorithm.RESIZE_CUBIC,
    }[prep.resize]
    try:
        ppp = PrePostProcessor(model)
        tensor = ppp.input().tensor()
        tensor.set_element_type(ov.Type.u8)
        tensor.set_layout(ov.Layout("NHWC"))
        tensor.set_color_format(ColorFormat.RGB)
        if resize:
            tensor.set_spatial_dynamic_shape()
        else:
            tensor.set_spatial_static_shape(height, width)
        steps = ppp.input().preprocess()
        # Resize first, on the u8 frame, so every per-pixel step after it (f32 conversion, colour,
        # mean/scale, layout) runs at the network's size rather than the frame's: converting a
        # 1920x1080 frame to f32 before shrinking it to 736x736 cost ~50 ms of a 154 ms inference
        # of the PP-OCRv4 detector. Linear on u8 rounds to whole pixel values (at most 0.5 off
        # the f32 result, unbiased); nearest is exact. Cubic stays in f32: its overshoot at
        # edges would be clamped to 0..255 on u8 (measured up to 43 off on a noisy frame).
        if not resize:
            steps.convert_element_type(ov.Type.f32)
        elif prep.resize == "cubic":
            steps.convert_element_type(ov.Type.f32)
            steps.resize(algorithm)
        else:
            steps.resize(algorithm)
            steps.convert_element_type(ov.Type.f32)
        # Colour after the f32 conversion: BGR is a channel swap, exact on any type, but GRAY is a
        # weighted sum that would add a second rounding on u8.
        if channels == 1:
            steps.convert_color(ColorFormat.GRAY)
        elif prep.color == "BGR":
            steps.convert_color(ColorFormat.BGR)
        if prep.mean is not None:
            steps.mean(prep.mean if len(prep.mean) > 1 else prep.mean[0])
        if prep.scale is not None:
            steps.scale(prep.scale if len(prep.scale) > 1 else prep.scale[0])
        ppp.input().model().set_layout(ov.Layout(layout))
        built = ppp.build()
    except Exception as exc:
        raise ModelError(f"cannot build the preprocessing for the model: {describe_openvino_error(exc)}") from exc
    return built if isinstance(built, ov.Model) else ov.Model(built)


def _explicit_preprocessing(model: ov.Model, image: ov.Output, layout: str, prep: Preprocessing,
                            height: int, width: int) -> ov.Model:
    """The no-resize preprocessing as plain ops, with the layout change last.

    What PrePostProcessor builds gets its NHWC-to-NCHW Transpose moved ahead of the f32 conversion,
    and the CPU plugin then converts the f32 NCHW tensor back to the channels-last layout its first
    convolution wants: two copies of the frame for nothing (0.5 + 1.1 ms of a 43 ms text-detector
    inference on one core). With the Transpose right after the mean/scale arithmetic the plugin
    folds it into that layout change and both disappear; the model input is bit-for-bit the same.
    (With neither mean nor scale the Transpose is moved up anyway, so PrePostProcessor stays.)
    """
    from openvino import opset13 as ops

    try:
        frame = ops.parameter([1, height, width, 3], ov.Type.u8, name="frame")
        frame.output(0).get_tensor().set_names(set(image.get_names()) or {"frame"})
        x = ops.convert(frame, ov.Type.f32)
        if prep.color == "BGR":
            x = ops.gather(x, ops.constant(np.array([2, 1, 0], np.int64)), ops.constant(np.array(3, np.int64)))
        if prep.mean is not None:
            x = ops.subtract(x, ops.constant(np.array(prep.mean, np.float32).reshape(1, 1, 1, -1)))
        if prep.scale is not None:
            x = ops.divide(x, ops.constant(np.array(prep.scale, np.float32).reshape(1, 1, 1, -1)))
        if layout == "NCHW":
            x = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
        for target in list(image.get_target_inputs()):
            target.replace_source_output(x.output(0))
        return ov.Model(model.get_results(), [frame], model.get_friendly_name())
    except Exception as exc:
        raise ModelError(f"cannot build the preprocessing for the model: {describe_openvino_error(exc)}") from exc
