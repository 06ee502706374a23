"""Compiling a preprocessed model and running it on frames, one at a time or many in flight.

The engine takes the model *after* :func:`~cluster.models.preprocessing.apply_preprocessing`, so its
one input is a ``u8`` ``[1, H, W, 3]`` RGB image of any size; callers hand it ``H x W x 3`` arrays.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from cluster.config import DEFAULT_DEVICE
from cluster.errors import InvalidInput, ModelError
from cluster.models.devices import require_device
from cluster.models.reading import describe_openvino_error


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInput(f"a frame must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput(f"a frame must be an H x W x 3 RGB array, got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise InvalidInput(f"a frame must be uint8, got {image.dtype}")
    return np.ascontiguousarray(image)[np.newaxis]


class InferenceEngine:
    """One compiled model on one device.

    ``precision`` sets ``INFERENCE_PRECISION_HINT`` where the device supports it. The default,
    ``"auto"``, asks the CPU for f32 and leaves other devices to their own default (f16 on GPUs):
    left to itself the CPU plugin runs in bf16 on processors that have AMX / AVX512-BF16 and in f32
    on others, so the same frame would get different annotations on different workers (MediaPipe's
    selfie segmentation moves by up to 0.33 in probability under bf16). ``None`` lets every device
    choose (about 1.4x faster on a bf16 CPU); ``"f32"``, ``"f16"``, ``"bf16"`` force one.
    """

    def __init__(
        self,
        model: ov.Model,
        device: str = DEFAULT_DEVICE,
        cache_dir: Path | None = None,
        *,
        core: ov.Core | None = None,
        precision: str | None = "auto",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.core = core if core is not None else ov.Core()
        self.device = device
        require_device(self.core, device)
        settings: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT"}
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            settings["CACHE_DIR"] = str(cache_dir)
        if precision == "auto":
            precision = "f32" if device.strip().upper().split(".", 1)[0] == "CPU" else None
        if precision is not None and self._supports(device, "INFERENCE_PRECISION_HINT"):
            settings["INFERENCE_PRECISION_HINT"] = precision
        settings.update(config or {})
        try:
            self.compiled = self.core.compile_model(model, device, settings)
        except Exception as exc:
            raise ModelError(f"cannot compile the model for {device}: {describe_openvino_error(exc)}") from exc
        self.output_names = [_output_name(port, i) for i, port in enumerate(self.compiled.outputs)]
        try:
            self.optimal_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:
            self.optimal_requests = 1
        self._idle: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        self.sample_outputs: dict[str, np.ndarray] | None = None  # set by warm_up()

    def warm_up(self, width: int, height: int) -> dict[str, np.ndarray]:
        """Infer one black ``width`` x ``height`` frame; keep and return its outputs.

        Call it once on the thread that built the engine, before any concurrent use: OpenVINO's
        Python binding initialises C++ statics on first tensor access, and two threads doing that
        first access at once deadlock against the GIL (seen: both stuck in __cxa_guard_acquire).
        The outputs, real ones with the model's names, shapes and dtypes, are what script processes
        are warmed up on (``cluster.scripts.warmup``).
        """
        blank = np.zeros((max(1, int(height)), max(1, int(width)), 3), np.uint8)
        self.sample_outputs = next(iter(self.infer_many([blank])))
        return self.sample_outputs

    def _supports(self, device: str, name: str) -> bool:
        try:
            return name in self.core.get_property(device, "SUPPORTED_PROPERTIES")
        except Exception:
            return False

    # -- one frame -------------------------------------------------------------------------------
    def infer(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Run one ``H x W x 3`` uint8 RGB frame; outputs (copies) by output name. Thread-safe."""
        batch = _check_image(image)
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({0: batch}, share_inputs=True)
            return self._collect(request)
        except (InvalidInput, ModelError):
            raise
        except Exception as exc:
            size = f"{image.shape[1]}x{image.shape[0]}"
            raise ModelError(f"inference failed on a {size} frame: {describe_openvino_error(exc)}") from exc
        finally:
            self._idle.put(request)

    def _collect(self, request: ov.InferRequest) -> dict[str, np.ndarray]:
        return {
            name: np.array(request.get_output_tensor(i).data, copy=True) for i, name in enumerate(self.output_names)
        }

    # -- many frames -----------------------------------------------------------------------------
    def infer_many(self, images: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Run frames with several requests in flight; results come back in input order.

        At most ``2 x OPTIMAL_NUMBER_OF_INFER_REQUESTS`` finished results wait for an earlier one,
        so memory stays bounded however long the input is.
        """
        jobs = ov.AsyncInferQueue(self.compiled, self.optimal_requests)
        window = 2 * self.optimal_requests
        done: dict[int, dict[str, np.ndarray] | BaseException] = {}
        changed = threading.Condition()

        def finished(request: ov.InferRequest, index: int) -> None:
            try:
                result: dict[str, np.ndarray] | BaseException = self._collect(request)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                result = exc
            with changed:
                done[index] = result
                changed.notify_all()

        jobs.set_callback(finished)
        submitted = 0
        next_out = 0

        def take(index: int) -> dict[str, np.ndarray]:
            with changed:
                changed.wait_for(lambda: index in done, timeout=5.0)
                result = done.pop(index, None)
            if result is None:
                # Slow, or a request that failed without calling back: let every request finish.
                try:
                    jobs.wait_all()
                except Exception as exc:
                    raise ModelError(f"inference failed on frame #{index}: {describe_openvino_error(exc)}") from exc
                with changed:
                    result = done.pop(index, None)
                if result is None:
                    raise ModelError(f"inference of frame #{index} ended without a result")
            if isinstance(result, BaseException):
                raise ModelError(f"inference failed on frame #{index}: {describe_openvino_error(result)}") from result
            return result

        try:
            for image in images:
                batch = _check_image(image)
                while submitted - next_out >= window:
                    yield take(next_out)
                    next_out += 1
                try:
                    jobs.start_async({0: batch}, submitted)
                except Exception as exc:
                    raise ModelError(f"inference failed on frame #{submitted}: {describe_openvino_error(exc)}") from exc
                submitted += 1
                while True:
                    with changed:
                        ready = next_out in done
                    if not ready:
                        break
                    yield take(next_out)
                    next_out += 1
            while next_out < submitted:
                yield take(next_out)
                next_out += 1
        finally:
            jobs.wait_all()  # never let callbacks outlive a consumer that stopped early

    def __repr__(self) -> str:
        return f"InferenceEngine(device={self.device!r}, outputs={self.output_names}, requests={self.optimal_requests})"


def _output_name(port: Any, index: int) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # an output without tensor names
        return f"output{index}"


class EngineCache:
    """A few compiled engines, keyed by ``(model_id, version, device)``, least recently used out.

    Thread-safe; an engine is built once even when several threads ask for the same key at once,
    and building one engine does not block lookups of others.
    """

    def __init__(self, capacity: int = 3) -> None:
        if capacity < 1:
            raise ValueError("an EngineCache holds at least one engine")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, InferenceEngine] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: tuple[str, Any, str], build: Callable[[], InferenceEngine]) -> InferenceEngine:
        with self._lock:
            engine = self._entries.get(key)
            if engine is not None:
                self._entries.move_to_end(key)
                return engine
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                engine = self._entries.get(key)
                if engine is not None:
                    self._entries.move_to_end(key)
                    return engine
            try:
                engine = build()
            except BaseException:
                with self._lock:
                    self._building.pop(key, None)
                raise
            with self._lock:
                self._entries[key] = engine
                self._entries.move_to_end(key)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                self._building.pop(key, None)
            return engine

    def peek(self, key: tuple[str, Any, str]) -> InferenceEngine | None:
        with self._lock:
            return self._entries.get(key)

    def discard(self, key: tuple[str, Any, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
