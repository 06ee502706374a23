"""The wire format between a worker and its script child processes.

A message is a *frame*: a 4-byte big-endian unsigned length, then that many bytes of msgpack.
Messages are maps with an ``"op"`` key (see ``child.py`` for the conversation). msgpack carries only
plain data (nil, bool, int, float, str, bin, array, map with string keys) plus one extension type for
numpy arrays. Nothing is ever pickled, on either side.

numpy arrays travel as msgpack ext type ``NDARRAY_EXT`` (1) whose payload is::

    u8  len(dtype)   | dtype.str in ASCII (e.g. "<f4", "|b1")
    u8  ndim         | ndim x u64 big-endian dimensions
    raw C-ordered data bytes

Only bool, integer, unsigned, float and complex dtypes are accepted; object, string, void and datetime
dtypes are refused. Decoding builds the array with ``np.frombuffer`` over the received bytes, so the
receiver's arrays are read-only and no copy beyond the read itself is made.

Frames longer than the cap (``DEFAULT_MAX_MESSAGE``, 64 MiB, configurable per connection) are refused
as soon as their header is read, before any of their body is buffered.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

import msgpack
import numpy as np

from cluster.errors import ScriptError

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
NDARRAY_EXT = 1
HEADER = struct.Struct(">I")
_ALLOWED_KINDS = frozenset("biufc")
_MAX_NDIM = 32


class ProtocolError(ScriptError):
    """The byte stream between worker and child is broken, oversized or holds something refused."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype:
        raise ProtocolError(f"numpy dtype {dtype.str!r} cannot be sent (only bool/int/uint/float/complex)")


def _encode_array(arr: np.ndarray) -> msgpack.ExtType:
    _check_dtype(arr.dtype)
    if arr.ndim > _MAX_NDIM:
        raise ProtocolError(f"numpy array with {arr.ndim} dimensions cannot be sent")
    dt = arr.dtype.str.encode("ascii")
    head = bytes((len(dt),)) + dt + bytes((arr.ndim,)) + struct.pack(f">{arr.ndim}Q", *arr.shape)
    # tobytes() gives C order whatever the layout of arr (one copy)
    return msgpack.ExtType(NDARRAY_EXT, head + arr.tobytes())


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        if isinstance(obj, (np.bool_, np.integer, np.floating)):
            return obj.item()
        raise ProtocolError(f"numpy scalar of type {type(obj).__name__} cannot be sent")
    if isinstance(obj, (set, frozenset)):
        raise ProtocolError("a set cannot be sent (use a list)")
    raise ProtocolError(f"an object of type {type(obj).__name__} cannot be sent")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise ProtocolError(f"unknown msgpack extension type {code}")
    try:
        n = data[0]
        dtype = np.dtype(data[1 : 1 + n].decode("ascii"))
        off = 1 + n
        ndim = data[off]
        off += 1
        if ndim > _MAX_NDIM:
            raise ProtocolError(f"numpy array with {ndim} dimensions refused")
        shape = struct.unpack_from(f">{ndim}Q", data, off)
        off += 8 * ndim
    except ProtocolError:
        raise
    except (IndexError, TypeError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ProtocolError(f"malformed numpy array in message: {exc}") from None
    _check_dtype(dtype)
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(data) - off:
        raise ProtocolError(
            f"numpy array {dtype.str}{list(shape)} needs {count * dtype.itemsize} bytes, got {len(data) - off}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=off).reshape(shape)


def _strict_default(obj: Any) -> Any:
    """For ``strict=True``: turn what a script returned into exact builtin types without running any
    method the script could have overridden (a float subclass's ``__float__``, a list's ``__iter__``)."""
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        return _default(obj)
    if isinstance(obj, int):  # bool cannot be subclassed, so this is an int subclass
        return int.__int__(obj)
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, dict):
        return dict.copy(obj)
    if isinstance(obj, list):
        return list.copy(obj)
    if isinstance(obj, tuple):
        return list(tuple.__iter__(obj))
    if isinstance(obj, bytes):
        return bytes(memoryview(obj))
    kind = "a function" if callable(obj) else f"a {type(obj).__name__}"
    raise ProtocolError(f"{kind} cannot be sent (use lists, dicts, strings, numbers, bools, None or arrays)")


def pack(obj: Any, max_size: int = DEFAULT_MAX_MESSAGE, *, strict: bool = False) -> bytes:
    """Serialise one message with its length header.

    ``strict=True`` is for data a script produced: only exact builtin types are packed as they are,
    subclasses are converted to their base type without calling their methods, tuples become lists.
    """
    try:
        if strict:
            body = msgpack.packb(obj, default=_strict_default, use_bin_type=True, datetime=False, strict_types=True)
        else:
            body = msgpack.packb(obj, default=_default, use_bin_type=True, datetime=False)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        text = str(exc)
        if "recursion" in text or "nest" in text:
            text = "data nested too deeply (or refers to itself)"
        raise ProtocolError(f"message cannot be serialised: {text}") from None
    if len(body) > max_size:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {max_size}-byte limit")
    return HEADER.pack(len(body)) + body


def unpack(body: bytes | bytearray | memoryview) -> Any:
    """Deserialise one message body (without its header)."""
    try:
        return msgpack.unpackb(body, raw=False, ext_hook=_ext_hook, strict_map_key=False, use_list=True)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}") from None


class FrameReader:
    """Incremental decoder: ``feed`` bytes as they arrive, iterate complete messages."""

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._need: int | None = None

    def feed(self, data: bytes) -> Iterator[Any]:
        self._buf += data
        while True:
            if self._need is None:
                if len(self._buf) < HEADER.size:
                    return
                (n,) = HEADER.unpack_from(self._buf)
                if n > self.max_size:
                    raise ProtocolError(f"incoming message of {n} bytes exceeds the {self.max_size}-byte limit")
                self._need = n
                del self._buf[: HEADER.size]
            if len(self._buf) < self._need:
                return
            body = self._buf[: self._need]
            del self._buf[: self._need]
            self._need = None
            yield unpack(body)

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buf)


def read_message(stream: Any, max_size: int = DEFAULT_MAX_MESSAGE) -> Any:
    """Blocking read of one message from a binary file object; None at a clean end of stream."""
    head = _read_exact(stream, HEADER.size, allow_eof=True)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    if n > max_size:
        raise ProtocolError(f"incoming message of {n} bytes exceeds the {max_size}-byte limit")
    body = _read_exact(stream, n, allow_eof=False)
    return unpack(body)


def _read_exact(stream: Any, n: int, *, allow_eof: bool) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            if got == 0 and allow_eof:
                return None
            raise ProtocolError(f"stream ended after {got} of {n} bytes")
        got += k
    return buf


def write_message(stream: Any, obj: Any, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
    """Blocking write of one message to a binary file object, flushed."""
    stream.write(pack(obj, max_size))
    stream.flush()
