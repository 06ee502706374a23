"""The wire format between a worker and its script child processes.

A message is a *frame*::

    u32 raw_len | u32 body_len      (8-byte header, big-endian)
    raw section (raw_len bytes)     numpy array data, each array starting at a multiple of 64
    body (body_len bytes)           msgpack

The body is a msgpack map with an ``"op"`` key (see ``child.py`` for the conversation). msgpack
carries only plain data (nil, bool, int, float, str, bin, array, map); extension types are refused
and nothing is ever pickled, on either side.

A numpy array is the map ``{"__nd__": True, "dtype": dtype.str, "shape": [...], "offset": o,
"nbytes": n}`` in the body, its C-ordered data being bytes ``o .. o+n`` of the raw section. Such maps
are only looked for when the raw section is not empty (a message whose arrays are all empty gets 64
bytes of padding), so a message without arrays decodes at msgpack's full speed. Keeping
bulk data out of the msgpack stream means the sender writes each array's own buffer with ``writev``
and the receiver builds arrays with ``np.frombuffer`` over the one buffer it read the frame into: no
user-space copy on either side. Received arrays are read-only. Only bool, integer, unsigned, float
and complex dtypes are accepted; object, string, void (structured) and datetime dtypes are refused
both ways, as are references outside the raw section or of the wrong size.

Frames longer than the cap (``DEFAULT_MAX_MESSAGE``, 64 MiB, configurable per connection) are refused
as soon as their header is read, before any of their content is buffered.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from cluster.errors import ScriptError

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
HEADER = struct.Struct(">II")  # raw_len, body_len
ALIGN = 64
_PAD = bytes(ALIGN)
_ALLOWED_KINDS = frozenset("biufc")
_MAX_NDIM = 32
_ND_KEYS = frozenset({"__nd__", "dtype", "shape", "offset", "nbytes"})


class ProtocolError(ScriptError):
    """The byte stream between worker and child is broken, oversized or holds something refused."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype:
        raise ProtocolError(f"numpy dtype {dtype.str!r} cannot be sent (only bool/int/uint/float/complex)")


# -- encoding -------------------------------------------------------------------------------------
class _Raw:
    """Collects the raw section while msgpack walks the message."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0
        self.count = 0

    def array(self, arr: np.ndarray) -> dict[str, Any]:
        _check_dtype(arr.dtype)
        if arr.ndim > _MAX_NDIM:
            raise ProtocolError(f"numpy array with {arr.ndim} dimensions cannot be sent")
        pad = -self.size % ALIGN
        if pad:
            self.parts.append(_PAD[:pad])
            self.size += pad
        data = np.ascontiguousarray(arr).reshape(-1).data.cast("B")
        self.count += 1
        ref = {"__nd__": True, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": self.size,
               "nbytes": data.nbytes}
        if data.nbytes:
            self.parts.append(data)
            self.size += data.nbytes
        return ref


def _scalar(obj: np.generic) -> Any:
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    raise ProtocolError(f"numpy scalar of type {type(obj).__name__} cannot be sent")


def _plain_default(raw: _Raw) -> Callable[[Any], Any]:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return raw.array(obj)
        if isinstance(obj, np.generic):
            return _scalar(obj)
        if isinstance(obj, (set, frozenset)):
            raise ProtocolError("a set cannot be sent (use a list)")
        raise ProtocolError(f"an object of type {type(obj).__name__} cannot be sent")

    return default


def _strict_default(raw: _Raw) -> Callable[[Any], Any]:
    """For data a script produced: exact builtin types only, converting subclasses to their base type
    without running any method the script could have overridden (``__float__``, ``__iter__``, ...)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return raw.array(obj)
        if isinstance(obj, np.generic):
            return _scalar(obj)
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

    return default


def encode(obj: Any, max_size: int = DEFAULT_MAX_MESSAGE, *, strict: bool = False) -> list[Any]:
    """Serialise one message as a list of buffers (header, raw parts..., body) for ``os.writev``.

    ``strict=True`` is for data a script produced: only exact builtin types are packed as they are,
    subclasses are converted to their base type without calling their methods, tuples become lists.
    The buffers may be views of the arrays in ``obj``: write them before changing those arrays.
    """
    raw = _Raw()
    try:
        if strict:
            body = msgpack.packb(obj, default=_strict_default(raw), use_bin_type=True, datetime=False,
                                 strict_types=True)
        else:
            body = msgpack.packb(obj, default=_plain_default(raw), use_bin_type=True, datetime=False)
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        text = str(exc)
        if "recursion" in text or "nest" in text:
            text = "data nested too deeply (or refers to itself)"
        raise ProtocolError(f"message cannot be serialised: {text}") from None
    if raw.count and not raw.size:  # only empty arrays: a non-empty raw section tells the reader to look
        raw.parts.append(_PAD)
        raw.size = ALIGN
    total = raw.size + len(body)
    if total > max_size:
        raise ProtocolError(f"message of {total} bytes exceeds the {max_size}-byte limit")
    return [HEADER.pack(raw.size, len(body)), *raw.parts, body]


def pack(obj: Any, max_size: int = DEFAULT_MAX_MESSAGE, *, strict: bool = False) -> bytes:
    """Serialise one message, header included, as one bytes object."""
    return b"".join(encode(obj, max_size, strict=strict))


# -- decoding -------------------------------------------------------------------------------------
def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension types are not accepted (got type {code})")


def _array_hook(buf: bytearray | bytes, raw_len: int) -> Callable[[dict[Any, Any]], Any]:
    def hook(d: dict[Any, Any]) -> Any:
        if d.get("__nd__") is not True or len(d) != len(_ND_KEYS) or d.keys() != _ND_KEYS:
            return d
        try:
            dtype = np.dtype(str(d["dtype"])[:16])
            shape = tuple(int(v) for v in d["shape"])
            offset, nbytes = int(d["offset"]), int(d["nbytes"])
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed numpy array in message: {exc}") from None
        _check_dtype(dtype)
        if len(shape) > _MAX_NDIM or any(v < 0 for v in shape) or offset < 0 or offset + nbytes > raw_len:
            raise ProtocolError("malformed numpy array in message")
        count = 1
        for v in shape:
            count *= v
        if count * dtype.itemsize != nbytes:
            need = count * dtype.itemsize
            raise ProtocolError(f"numpy array {dtype.str}{list(shape)} needs {need} bytes, got {nbytes}")
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset) if count else np.empty(0, dtype)
        arr.flags.writeable = False
        return arr.reshape(shape)

    return hook


def decode(buf: bytearray | bytes, raw_len: int) -> Any:
    """Deserialise a frame's content (raw section then body) as read into ``buf``.

    A frame without a raw section holds no arrays (the sender pads the raw section of a message
    whose arrays are all empty), so its maps are left as they are without a Python call for each:
    most replies from a script are a list of small dicts and nothing else.
    """
    try:
        return msgpack.unpackb(
            memoryview(buf)[raw_len:],
            raw=False,
            object_hook=_array_hook(buf, raw_len) if raw_len else None,
            ext_hook=_refuse_ext,
            strict_map_key=False,
            use_list=True,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}") from None


def _sizes(head: bytes | bytearray, max_size: int) -> tuple[int, int]:
    raw_len, body_len = HEADER.unpack(head)
    if raw_len + body_len > max_size:
        raise ProtocolError(f"incoming message of {raw_len + body_len} bytes exceeds the {max_size}-byte limit")
    return raw_len, body_len


def unpack(frame: bytes | bytearray) -> Any:
    """Deserialise one whole frame, header included."""
    if len(frame) < HEADER.size:
        raise ProtocolError("truncated frame")
    raw_len, body_len = _sizes(frame[: HEADER.size], len(frame))
    if HEADER.size + raw_len + body_len != len(frame):
        raise ProtocolError("frame length does not match its header")
    return decode(bytearray(frame[HEADER.size :]), raw_len)


_NOTHING = object()


class FrameReader:
    """Incremental decoder that reads each frame straight into one buffer of the announced size.

    ``read_fd(fd)`` reads what a (non-blocking) fd has; ``feed(data)`` takes bytes from elsewhere.
    Both return the messages completed, in order.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._head = bytearray(HEADER.size)
        self._buf: bytearray | None = None
        self._raw_len = 0
        self._got = 0

    def _target(self) -> memoryview:
        buf = self._head if self._buf is None else self._buf
        return memoryview(buf)[self._got :]

    def _advance(self, n: int) -> Any:
        """Account for n bytes written into the target; return a completed message or _NOTHING."""
        self._got += n
        if self._buf is None:
            if self._got < HEADER.size:
                return _NOTHING
            self._raw_len, body_len = _sizes(self._head, self.max_size)
            self._buf = bytearray(self._raw_len + body_len)
            self._got = 0
        if self._got < len(self._buf):
            return _NOTHING
        buf, self._buf, self._got = self._buf, None, 0
        return decode(buf, self._raw_len)

    def read_fd(self, fd: int) -> list[Any]:
        """Read until the fd would block or a message is complete; raise EOFError at end of stream."""
        while True:
            target = self._target()
            n = 0
            if len(target):
                try:
                    n = os.readv(fd, [target])
                except BlockingIOError:
                    return []
                if n == 0:
                    raise EOFError()
            msg = self._advance(n)
            if msg is not _NOTHING:
                return [msg]  # let the caller act on it before reading more

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        out: list[Any] = []
        view = memoryview(data).cast("B")
        while True:
            target = self._target()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            msg = self._advance(n)
            if msg is not _NOTHING:
                out.append(msg)
            elif not view:
                return out

    @property
    def pending(self) -> int:
        """Bytes of the current, incomplete header or frame received so far."""
        return self._got


class _Buffers:
    """Receive buffers that are reused once nothing refers to them any more.

    The arrays of a message are views of the buffer it was read into, so a buffer is taken again
    only when its reference count says that no array (nor anything else) still uses it: a script
    that keeps an output array keeps its buffer to itself. Two are kept, because the previous
    message is usually still referenced while the next one is read. Reuse saves zeroing a fresh
    buffer and faulting its pages in, which is most of the cost of receiving a large output.
    """

    KEEP = 2
    MAX_KEPT = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._kept: list[bytearray] = []
        self._lock = threading.Lock()

    def get(self, n: int) -> memoryview:
        with self._lock:
            for buf in self._kept:
                # references: the list, the loop variable and getrefcount's argument
                if len(buf) >= n and sys.getrefcount(buf) <= 3:
                    return memoryview(buf)[:n]
            buf = bytearray(n)
            if n <= self.MAX_KEPT:
                free = [b for b in self._kept if sys.getrefcount(b) <= 3]
                if len(self._kept) < self.KEEP:
                    self._kept.append(buf)
                elif free:
                    self._kept[self._kept.index(min(free, key=len))] = buf
            return memoryview(buf)


_BUFFERS = _Buffers()


def read_message(stream: Any, max_size: int = DEFAULT_MAX_MESSAGE) -> Any:
    """Blocking read of one message from a binary file object; None at a clean end of stream."""
    head = _read_exact(stream, HEADER.size, allow_eof=True)
    if head is None:
        return None
    raw_len, body_len = _sizes(head, max_size)
    buf = _read_exact(stream, raw_len + body_len, allow_eof=False, buffers=_BUFFERS)
    assert buf is not None
    return decode(buf, raw_len)


def _read_exact(stream: Any, n: int, *, allow_eof: bool, buffers: _Buffers | None = None) -> Any:
    buf: Any = bytearray(n) if buffers is None else buffers.get(n)
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


IOV_MAX = 1024


def byte_views(parts: list[Any]) -> list[memoryview]:
    """The non-empty buffers of a message as byte views, ready for ``os.writev``."""
    return [memoryview(p).cast("B") for p in parts if len(p)]


def advance(views: list[memoryview], n: int) -> None:
    """Drop the ``n`` bytes a (possibly partial) ``os.writev`` wrote from the front of ``views``."""
    while n and views:
        if n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        else:
            views[0] = views[0][n:]
            n = 0


def write_all(fd: int, parts: list[Any]) -> None:
    """Blocking write of every byte of ``parts`` to ``fd`` with as few syscalls as possible."""
    views = byte_views(parts)
    while views:
        advance(views, os.writev(fd, views[:IOV_MAX]))
