"""Model-format support beyond what OpenVINO reads alone: conversion extensions for custom TFLite ops.

They live with model reading (:mod:`cluster.models.reading` applies them to every ``.tflite`` file it
reads), not with the zoo, because any uploaded TFLite model may use them, not only zoo models.

MediaPipe models (selfie segmentation, hair segmentation, ...) use a custom op,
``Convolution2DTransposeBias``: a transposed convolution with bias, inputs ``input`` (NHWC),
``weights`` (OHWI) and ``bias`` (O). OpenVINO's TFLite frontend has no translator for it.

Its parameters are not a flexbuffer map (which is what the frontend's ``NodeContext.get_attribute``
parses custom options as) but MediaPipe's raw ``TfLiteTransposeConvParams`` struct: three
little-endian int32 ``padding`` (1 SAME, 2 VALID), ``stride_width``, ``stride_height``. The node
context cannot hand those bytes over, so they are read here straight from the ``.tflite``
flatbuffer, with the tensors' static shapes, and the converter picks the entry whose input and
weights shapes match the node it converts.

The translation uses opset ops only: transpose to NCHW, ``ConvolutionBackpropData`` with the
stride and the padding TFLite uses (the odd pixel of padding goes at the end), add the bias,
transpose back to NHWC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cluster.errors import ModelError

TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
_PADDING = {1: "SAME", 2: "VALID"}


# -- a minimal read-only flatbuffer reader for the few TFLite schema fields needed ---------------
class _Table:
    """One flatbuffer table: fields by index in the schema (tflite/schema.fbs)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return 0
        return struct.unpack_from("<H", self.buf, self.vtable + entry)[0]

    def scalar(self, index: int, fmt: str, default: Any = 0) -> Any:
        offset = self._field(index)
        return default if not offset else struct.unpack_from("<" + fmt, self.buf, self.pos + offset)[0]

    def _target(self, index: int) -> int | None:
        offset = self._field(index)
        if not offset:
            return None
        at = self.pos + offset
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def _vector(self, index: int) -> tuple[int, int]:
        at = self._target(index)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, index: int) -> list[_Table]:
        start, count = self._vector(index)
        out = []
        for k in range(count):
            element = start + 4 * k
            out.append(_Table(self.buf, element + struct.unpack_from("<I", self.buf, element)[0]))
        return out

    def ints(self, index: int) -> list[int]:
        start, count = self._vector(index)
        return list(struct.unpack_from(f"<{count}i", self.buf, start)) if count else []

    def raw(self, index: int) -> bytes | None:
        start, count = self._vector(index)
        return bytes(self.buf[start : start + count]) if start else None

    def string(self, index: int) -> str | None:
        data = self.raw(index)
        return None if data is None else data.decode("utf-8", "replace")


@dataclass(frozen=True)
class TransposeConvBiasParams:
    """One ``Convolution2DTransposeBias`` node as stored in a ``.tflite`` file."""

    name: str  # the output tensor's name
    padding: str  # "SAME" or "VALID"
    stride_h: int
    stride_w: int
    input_shape: tuple[int, ...]  # NHWC
    weights_shape: tuple[int, ...]  # OHWI
    output_shape: tuple[int, ...]  # NHWC

    def pads(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(pads_begin, pads_end, output_padding) over (H, W) for ConvolutionBackpropData.

        ``out = stride * (in - 1) + k - pads_begin - pads_end + output_padding``. The output size is
        the one in the file when known, else the one the padding mode implies; TFLite puts the odd
        pixel of padding at the end (``ComputePaddingWithOffset``), as OpenVINO's SAME_UPPER does.
        """
        begin, end, extra = [], [], []
        for axis, stride in ((1, self.stride_h), (2, self.stride_w)):
            size_in = self.input_shape[axis]
            kernel = self.weights_shape[axis]
            size_out = self.output_shape[axis] if len(self.output_shape) == 4 and self.output_shape[axis] > 0 else -1
            if size_out <= 0:
                size_out = size_in * stride if self.padding == "SAME" else stride * (size_in - 1) + kernel
            total = stride * (size_in - 1) + kernel - size_out
            if total >= 0:
                begin.append(total // 2)
                end.append(total - total // 2)
                extra.append(0)
            else:
                begin.append(0)
                end.append(0)
                extra.append(-total)
        return (begin[0], begin[1]), (end[0], end[1]), (extra[0], extra[1])


def read_transpose_conv_bias_params(path: Path) -> list[TransposeConvBiasParams]:
    """Every ``Convolution2DTransposeBias`` node of a ``.tflite`` file, with its parameters."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path.name}: {exc}", file=path.name) from exc
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"{path.name} is not a TFLite model (no TFL3 identifier)", file=path.name)
    try:
        return _parse(buf, path)
    except ModelError:
        raise
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name} is not a well-formed TFLite flatbuffer: {exc}", file=path.name) from exc


def _parse(buf: bytes, path: Path) -> list[TransposeConvBiasParams]:
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    # Model: 1 operator_codes, 2 subgraphs. OperatorCode: 1 custom_code.
    custom_codes = [code.string(1) for code in model.tables(1)]
    found: list[TransposeConvBiasParams] = []
    for subgraph in model.tables(2):
        # SubGraph: 0 tensors, 3 operators. Tensor: 0 shape, 3 name.
        tensors = subgraph.tables(0)
        for op in subgraph.tables(3):
            # Operator: 0 opcode_index, 1 inputs, 2 outputs, 5 custom_options.
            index = op.scalar(0, "I")
            if index >= len(custom_codes) or custom_codes[index] != TRANSPOSE_CONV_BIAS:
                continue
            inputs, outputs = op.ints(1), op.ints(2)
            if len(inputs) != 3 or len(outputs) != 1:
                raise ModelError(f"{path.name}: {TRANSPOSE_CONV_BIAS} needs 3 inputs and 1 output", file=path.name)
            options = op.raw(5) or b""
            if len(options) < 12:
                raise ModelError(
                    f"{path.name}: {TRANSPOSE_CONV_BIAS} has {len(options)} bytes of options, expected "
                    "MediaPipe's 12-byte TfLiteTransposeConvParams",
                    file=path.name,
                )
            padding, stride_w, stride_h = struct.unpack_from("<iii", options, 0)
            if padding not in _PADDING or stride_w < 1 or stride_h < 1:
                raise ModelError(
                    f"{path.name}: {TRANSPOSE_CONV_BIAS} has unexpected options padding={padding} "
                    f"stride=({stride_h}, {stride_w})",
                    file=path.name,
                )
            shape = [tuple(tensors[i].ints(0)) for i in (*inputs, outputs[0])]
            if len(shape[0]) != 4 or len(shape[1]) != 4:
                raise ModelError(f"{path.name}: {TRANSPOSE_CONV_BIAS} input and weights must be 4-D", file=path.name)
            found.append(
                TransposeConvBiasParams(
                    name=tensors[outputs[0]].string(3) or "",
                    padding=_PADDING[padding],
                    stride_h=stride_h,
                    stride_w=stride_w,
                    input_shape=shape[0],
                    weights_shape=shape[1],
                    output_shape=shape[3],
                )
            )
    return found


# -- the translation ------------------------------------------------------------------------------
def transpose_conv_bias(x: Any, weights: Any, bias: Any, params: TransposeConvBiasParams) -> Any:
    """Build the op from opset nodes: ``x`` NHWC, ``weights`` OHWI, ``bias`` (O,) → NHWC output."""
    import openvino.opset13 as ops

    x_nchw = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    # ConvolutionBackpropData wants [C_in, C_out, kH, kW]: OHWI -> IOHW.
    w_iohw = ops.transpose(weights, ops.constant(np.array([3, 0, 1, 2], np.int64)))
    begin, end, extra = params.pads()
    y = ops.convolution_backprop_data(
        x_nchw,
        w_iohw,
        strides=[params.stride_h, params.stride_w],
        pads_begin=list(begin),
        pads_end=list(end),
        dilations=[1, 1],
        output_padding=list(extra),
    )
    y = ops.transpose(y, ops.constant(np.array([0, 2, 3, 1], np.int64)))
    return ops.add(y, bias)


def _shape_of(output: Any) -> tuple[int, ...] | None:
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic or shape.is_dynamic:
        return None
    return tuple(int(d) for d in shape.to_shape())


def _matches(expected: tuple[int, ...], actual: tuple[int, ...] | None) -> bool:
    if actual is None or len(actual) != len(expected):
        return actual is None
    return all(e <= 0 or e == a for e, a in zip(expected, actual))


def conversion_extensions(path: Path) -> list[Any]:
    """The ConversionExtensions a ``.tflite`` file needs (none for a plain TFLite model)."""
    from openvino.frontend import ConversionExtension

    params = read_transpose_conv_bias_params(path)
    if not params:
        return []
    name = Path(path).name

    def convert(context: Any) -> list[Any]:
        x, weights, bias = context.get_input(0), context.get_input(1), context.get_input(2)
        x_shape, w_shape = _shape_of(x), _shape_of(weights)
        candidates = [p for p in params if _matches(p.input_shape, x_shape) and _matches(p.weights_shape, w_shape)]
        distinct = {(p.padding, p.stride_h, p.stride_w, p.pads()) for p in candidates}
        if len(distinct) != 1:
            raise ModelError(
                f"{name}: cannot tell which {TRANSPOSE_CONV_BIAS} node has input {x_shape} and "
                f"weights {w_shape} ({len(candidates)} candidates)",
                file=name,
            )
        return [transpose_conv_bias(x, weights, bias, candidates[0]).output(0)]

    return [ConversionExtension(TRANSPOSE_CONV_BIAS, convert)]
