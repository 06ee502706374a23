"""The wire format between a worker and its script child processes.

A message is a *frame*: a 4-byte big-endian unsigned length, then that many bytes of msgpack.
Messages are maps with an ``"op"`` key (see ``child.py`` for the conversation). msgpack carries only
plain data (nil, bool, int, float, str, bin, array, map). Nothing is ever pickled, on either side.

numpy arrays travel as the map ``{"__nd__": True, "dtype": dtype.str, "shape": [...], "data": bin}``
with C-ordered data; the sender packs the array's own buffer (no intermediate copy) and the receiver
turns exactly such a map back into an array with ``np.frombuffer`` over the received ``bytes``, so
arrays arrive read-only. Only bool, integer, unsigned, float and complex dtypes are accepted; object,
string, void (structured) and datetime dtypes are refused both ways.

Frames longer than the cap (``DEFAULT_MAX_MESSAGE``, 64 MiB, configurable per connection) are refused
as soon as their header is read, before any of their body is buffered. Readers read the body straight
into one buffer of the announced size, and writers send header and body with one ``writev``.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Iterator

import msgpack
import numpy as np

from cluster.errors import ScriptError

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
HEADER = struct.Struct(">I")
_ALLOWED_KINDS = frozenset("biufc")
_EXT_TYPES_REFUSED = "msgpack extension types are not accepted"
_MAX_NDIM = 32


class ProtocolError(ScriptError):
    """The byte stream between worker and child is broken, oversized or holds something refused."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype:
        raise ProtocolError(f"numpy dtype {dtype.str!r} cannot be sent (only bool/int/uint/float/complex)")


def _encode_array(arr: np.ndarray) -> dict[str, Any]:
    _check_dtype(arr.dtype)
    if arr.ndim > _MAX_NDIM:
        raise ProtocolError(f"numpy array with {arr.ndim} dimensions cannot be sent")
    flat = np.ascontiguousarray(arr).reshape(-1)
    return {"__nd__": True, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": memoryview(flat).cast("B")}


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


_ND_KEYS = frozenset({"__nd__", "dtype", "shape", "data"})


def _object_hook(d: dict[Any, Any]) -> Any:
    if d.get("__nd__") is not True or len(d) != 4 or d.keys() != _ND_KEYS:
        return d
    try:
        dtype = np.dtype(str(d["dtype"])[:16])
        shape = tuple(int(v) for v in d["shape"])
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed numpy array in message: {exc}") from None
    data = d["data"]
    if not isinstance(data, bytes) or len(shape) > _MAX_NDIM or any(v < 0 for v in shape):
        raise ProtocolError("malformed numpy array in message")
    _check_dtype(dtype)
    count = 1
    for v in shape:
        count *= v
    if count * dtype.itemsize != len(data):
        raise ProtocolError(f"numpy array {dtype.str}{list(shape)} needs {count * dtype.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(shape)


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


def encode(obj: Any, max_size: int = DEFAULT_MAX_MESSAGE, *, strict: bool = False) -> tuple[bytes, bytes]:
    """Serialise one message as (length header, body), ready for ``os.writev``.

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
    return HEADER.pack(len(body)), body


def pack(obj: Any, max_size: int = DEFAULT_MAX_MESSAGE, *, strict: bool = False) -> bytes:
    """Serialise one message with its length header, as one bytes object."""
    head, body = encode(obj, max_size, strict=strict)
    return head + body


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"{_EXT_TYPES_REFUSED} (got type {code})")


def unpack(body: bytes | bytearray | memoryview) -> Any:
    """Deserialise one message body (without its header)."""
    try:
        return msgpack.unpackb(
            body, raw=False, object_hook=_object_hook, ext_hook=_refuse_ext, strict_map_key=False, use_list=True
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}") from None


class FrameReader:
    """Incremental decoder that reads each body straight into a buffer of the announced size.

    ``read_fd(fd)`` reads what a (non-blocking) fd has; ``feed(data)`` takes bytes from elsewhere.
    Both return the messages completed, in order.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._head = bytearray(HEADER.size)
        self._body: bytearray | None = None
        self._got = 0

    def _target(self) -> memoryview:
        buf = self._head if self._body is None else self._body
        return memoryview(buf)[self._got :]

    def _advance(self, n: int) -> Any:
        """Account for n bytes written into the target; return a completed message or _NOTHING."""
        self._got += n
        if self._body is None:
            if self._got < HEADER.size:
                return _NOTHING
            (size,) = HEADER.unpack(self._head)
            if size > self.max_size:
                raise ProtocolError(f"incoming message of {size} bytes exceeds the {self.max_size}-byte limit")
            self._body = bytearray(size)
            self._got = 0
        if self._got < len(self._body):
            return _NOTHING
        body, self._body, self._got = self._body, None, 0
        return unpack(body)

    def read_fd(self, fd: int) -> list[Any]:
        """Read until the fd would block; raise EOFError at end of stream."""
        out: list[Any] = []
        while True:
            target = self._target()
            if len(target):
                try:
                    n = os.readv(fd, [target])
                except BlockingIOError:
                    return out
                if n == 0:
                    raise EOFError()
            else:
                n = 0  # an empty body
            msg = self._advance(n)
            if msg is not _NOTHING:
                out.append(msg)
                return out  # let the caller act on it before reading more

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        out: list[Any] = []
        view = memoryview(data)
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
        """Bytes received that do not yet form a whole message."""
        return self._got


_NOTHING = object()


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


def write_all(fd: int, parts: tuple[bytes, bytes] | list[Any]) -> None:
    """Blocking write of every byte of ``parts`` to ``fd`` with as few syscalls as possible."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        n = os.writev(fd, views)
        while n and views:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


def write_message(stream: Any, obj: Any, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
    """Blocking write of one message to a binary file object, flushed."""
    stream.write(pack(obj, max_size))
    stream.flush()
