"""Processing one chunk: fetch frames, decode, infer, interpret, write the result, mark it done.

The result is written to a key that depends only on job and chunk, before the chunk is marked
done in one atomic step: a redelivered message overwrites the same object and finds the chunk
already done, so no frame is ever annotated twice in the output.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from cluster.annotations.chunk_result import AnnotatedFrame, ChunkResult, FailedFrame
from cluster.config import Settings
from cluster.errors import FrameError, ModelError, PrelabelError, ServiceUnavailable
from cluster.jobs.states import ChunkState
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.models.engine import EngineCache, InferenceEngine
from cluster.models.preprocessing import Preprocessing, apply_preprocessing
from cluster.models.reading import read_model
from cluster.objectstore import ObjectStore
from cluster.scripts import FrameInput, ScriptPool
from cluster.scripts.warmup import WarmUp
from cluster.store import Store
from cluster.store import events as ev
from cluster.workers.activity import Activity
from cluster.workers.artifacts import ModelFiles
from cluster.workers.cpu_quota import limit_cpu_threads
from cluster.workers.decode import FrameDecoder
from cluster.workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)

#: Frames per call into the script process: enough to amortise a round trip, small enough to overlap.
SCRIPT_BATCH = 8
#: Script sources kept in memory (a few KB each), by (S3 key, sha256).
SCRIPT_SOURCES_CACHED = 32


@dataclass
class FrameOutcome:
    frame: int
    name: str
    width: int
    height: int
    shapes: list[dict[str, Any]] | None = None
    reason: str | None = None


class ChunkProcessor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        objects: ObjectStore,
        device: str,
        metrics: WorkerMetrics,
        *,
        last_attempt: Callable[[], bool] = lambda: True,
        retries: Callable[[], int] = lambda: 0,
        activity: Activity | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self.device = device
        self.metrics = metrics
        self.last_attempt = last_attempt
        self.retries = retries
        self.core = ov.Core()
        self.inference_threads = limit_cpu_threads(self.core, device, settings.inference_threads)
        self.files = ModelFiles(objects, Path(settings.cache_dir))
        self.engines = EngineCache(capacity=4)
        # What this worker is doing, for its heartbeat (the keeper thread publishes it).
        self.activity = activity or Activity(models_kept=self.engines.capacity)
        self.scripts = ScriptPool.from_settings(settings, extra_allowed=store.allowlist.modules)
        self.fetcher = ThreadPoolExecutor(max_workers=max(1, settings.fetch_threads), thread_name_prefix="fetch")
        self._sources: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._sources_lock = threading.Lock()
        self._warm_models: set[str] = set()  # models this process has finished a chunk of

    def close(self) -> None:
        self.fetcher.shutdown(wait=False, cancel_futures=True)
        self.scripts.close()
        self.engines.clear()

    # -- the actor's body -------------------------------------------------------------------
    def _timed(self, stage: str, t0: float) -> float:
        """Observe ``stage`` as lasting since ``t0``; return now (the next stage's start)."""
        t = time.perf_counter()
        self.metrics.stage.labels(self.device, stage).observe(t - t0)
        return t

    def __call__(self, job_id: str, chunk: int, start: int, stop: int, step: int) -> None:
        """Run one chunk's message. Its queue wait and time are observed around this call by the
        worker's middleware (``workers/middleware/timing.py``)."""
        claimed = False
        frames: list[dict[str, Any]] | None = None
        job: dict[str, Any] = {}
        try:
            t = time.perf_counter()
            claimed, why = self.store.jobs.claim_chunk(job_id, chunk, self.settings.poison_deaths)
            t = self._timed("claim", t)
            if not claimed:
                if why == ChunkState.PARKED.value:
                    log.error("job %s chunk %d parked: its worker died %d times running it", job_id, chunk,
                              self.settings.poison_deaths)
                    self._event(ev.CHUNK_PARKED, job_id, chunk, self._parked_reason(job_id, chunk))
                else:
                    log.info("skipping job %s chunk %d: %s", job_id, chunk, why)
                return
            if why == ChunkState.RUNNING.value:
                log.warning("job %s chunk %d: taking over a chunk another delivery started", job_id, chunk)
            began = t
            job = self.store.jobs.get_unchecked(job_id)
            frames = self.store.datasets.frames(job["dataset"], start, stop, step)
            with self.activity.running(job, chunk, len(frames)):
                outcomes = self._process(job, frames)
                self._commit(job_id, chunk, outcomes, job)
        except Exception as exc:  # noqa: BLE001 - any chunk-wide failure must still end the chunk
            # A chunk-wide failure at any step (claim, reads, fetch, model, script, commit: Redis or
            # S3 down, a bug). Hand the chunk back and retry while Dramatiq will; on the last attempt
            # record every frame as failed with the reason, in Redis alone, so the job ends.
            self.metrics.errors.labels(self.device, "chunk").inc()
            reason = exc.message if isinstance(exc, PrelabelError) else f"{type(exc).__name__}: {exc}"
            # An outage (Redis or S3 unreachable) is retried over the whole retry window; anything
            # else (a model file missing, a bug) would fail the same way: max_retries, not minutes.
            transient = isinstance(exc, (ServiceUnavailable, ConnectionError, TimeoutError))
            if not self.last_attempt() and (transient or self.retries() < self.settings.max_retries):
                log.warning("job %s chunk %d failed, will retry: %s", job_id, chunk, reason)
                self._best_effort(lambda: self.store.jobs.note_failure(job_id, reason))
                self._event(ev.CHUNK_RETRY, job_id, chunk, reason, job)
                if claimed:
                    self._best_effort(lambda: self.store.jobs.release_chunk(job_id, chunk))
                raise
            log.error("job %s chunk %d failed for good: %s", job_id, chunk, reason)
            self.give_up(job_id, chunk, start, stop, step, reason, frames)
            self._event(ev.CHUNK_FAILED, job_id, chunk, reason, job, count=len(range(start, stop, step)))
            return
        elapsed = time.perf_counter() - began
        self._record_speed(job["model"], elapsed, frames, outcomes)
        log.info("job %s chunk %d: %d frames in %.2fs", job_id, chunk, len(outcomes), elapsed)

    @staticmethod
    def _best_effort(call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - Redis down: the retry (or the reconciler) copes
            log.warning("%s", exc)

    def _event(self, kind: str, job_id: str, chunk: int, reason: str, job: dict[str, Any] | None = None,
               **more: Any) -> None:
        """Show the failure on the cluster page's recent errors; never fails the chunk (logged if Redis
        will not take it)."""
        self._best_effort(lambda: self.store.events.record(
            kind, job=job_id, chunk=chunk, reason=reason, owner=(job or {}).get("owner"), device=self.device,
            worker=self.activity.worker_id, **more))

    def _parked_reason(self, job_id: str, chunk: int) -> str:
        try:
            return str(self.store.jobs.parked(job_id)[chunk]["reason"])
        except Exception:  # noqa: BLE001 - only the words of an event; the chunk is parked either way
            return f"its worker died {self.settings.poison_deaths} times while running it"

    def give_up(self, job_id: str, chunk: int, start: int, stop: int, step: int, reason: str,
                frames: list[dict[str, Any]] | None = None) -> None:
        """End the chunk with every frame failed and ``reason``, recorded in Redis only: the give-up
        must not depend on S3, which may be what just failed. Any result an earlier attempt wrote
        to S3 is overwritten with an empty one when S3 answers, so the export matches the counters
        (the export skips a chunk whose result is missing). Raises if Redis is down too: the
        message is then dead-lettered and the reconciler sends the chunk again later."""
        if frames is None:
            try:
                frames = self.store.datasets.frames(self.store.jobs.get_unchecked(job_id)["dataset"], start, stop, step)
            except Exception:  # noqa: BLE001 - the frames' names are a nicety; their numbers are known
                frames = [{"frame": f, "name": ""} for f in range(start, stop, step)]
        failed: list[FailedFrame] = [{"frame": f["frame"], "name": f.get("name", ""), "reason": reason}
                                     for f in frames]
        finished = self.store.jobs.finish_chunk(job_id, chunk, state=ChunkState.FAILED, done=0, failed=failed)
        if finished:
            self.metrics.frames.labels(self.device, "failed").inc(len(failed))
            self._best_effort(lambda: ChunkResult(job_id, chunk, failed=failed).save(self.objects))

    def _record_speed(self, model_id: str, elapsed: float, frames: list[Any], outcomes: list[FrameOutcome]) -> None:
        """Report the chunk's seconds per frame, what later jobs of this model size their chunks by
        (``jobs.submit_job``). Not for a model's first chunk in this process, which compiled the model
        and started its script (seconds that say nothing about its speed), nor for failed frames."""
        if model_id not in self._warm_models:
            self._warm_models.add(model_id)
            return
        if not frames or any(o.reason is not None for o in outcomes):
            return
        try:
            self.store.models.record_speed(model_id, self.device, elapsed / len(frames))
        except PrelabelError as exc:
            log.warning("could not record the speed of model %s: %s", model_id, exc.message)

    def _commit(self, job_id: str, chunk: int, outcomes: list[FrameOutcome],
                job: dict[str, Any] | None = None) -> None:
        t = time.perf_counter()
        done: list[AnnotatedFrame] = [
            {"frame": o.frame, "name": o.name, "width": o.width, "height": o.height, "shapes": o.shapes or []}
            for o in outcomes if o.reason is None
        ]
        failed: list[FailedFrame] = [{"frame": o.frame, "name": o.name, "reason": o.reason}
                                     for o in outcomes if o.reason is not None]
        ChunkResult(job_id, chunk, done, failed).save(self.objects)
        t = self._timed("write", t)
        state = ChunkState.DONE if done or not failed else ChunkState.FAILED
        finished = self.store.jobs.finish_chunk(job_id, chunk, state=state, done=len(done), failed=failed)
        self._timed("finish", t)
        self.activity.processed(len(done), len(failed))
        if finished:
            self.metrics.frames.labels(self.device, "done").inc(len(done))
            self.metrics.frames.labels(self.device, "failed").inc(len(failed))
            by_reason: dict[str, list[int]] = {}
            for f in failed:
                by_reason.setdefault(f["reason"], []).append(f["frame"])
            for reason, numbers in by_reason.items():
                self._event(ev.FRAMES_FAILED, job_id, chunk, reason, job, frames=numbers)

    # -- the pipeline ------------------------------------------------------------------------
    def _engine(self, model: dict[str, Any]) -> InferenceEngine:
        def build() -> InferenceEngine:
            directory = self.files.local_dir(model)
            ov_model = read_model(self.core, directory / "model.xml", directory / "model.bin")
            prep = Preprocessing.from_dict(model["preprocessing"])
            ov_model = apply_preprocessing(ov_model, prep, resize=not FrameDecoder.for_preprocessing(prep).resizes)
            engine = InferenceEngine(ov_model, self.device, cache_dir=Path(self.settings.cache_dir) / "ov",
                                     core=self.core)
            engine.warm_up(prep.width or 64, prep.height or 64)
            return engine

        engine = self.engines.get((model["id"], model.get("version", 1), self.device), build)
        self.activity.model_loaded(model)
        return engine

    def _script_source(self, model: dict[str, Any]) -> str:
        """The model's script, read from S3 once per (key, sha256): models are immutable, and a GET
        per chunk is a round trip for nothing (a new version of a model is a new record)."""
        key = (model["script_key"], model.get("script_sha256") or "")
        with self._sources_lock:
            source = self._sources.get(key)
            if source is not None:
                self._sources.move_to_end(key)
                return source
        data = self.objects.get_bytes(model["script_key"])
        if key[1] and hashlib.sha256(data).hexdigest() != key[1]:
            raise ModelError(f"the script of model {model.get('id')} does not match its recorded sha256")
        source = data.decode()
        with self._sources_lock:
            self._sources[key] = source
            while len(self._sources) > SCRIPT_SOURCES_CACHED:
                self._sources.popitem(last=False)
        return source

    def _fetch_decode(self, frame: dict[str, Any], decode: FrameDecoder) -> np.ndarray:
        t = time.perf_counter()
        data = self.objects.get_bytes(frame["key"])
        t = self._timed("fetch", t)
        self.metrics.fetch_bytes.labels(self.device).inc(len(data))
        image = decode(data, frame["name"])
        self._timed("decode", t)
        return image

    def _interpret(self, runner: Any, frames: list[FrameInput], context: dict[str, Any]) -> list[Any]:
        t = time.perf_counter()
        try:
            return runner.run(frames, context)
        finally:
            self._timed("script", t)

    def _process(self, job: dict[str, Any], frames: list[dict[str, Any]]) -> list[FrameOutcome]:
        t = time.perf_counter()
        model = self.store.models.get_unchecked(job["model"])
        engine = self._engine(model)
        source = self._script_source(model)
        self._timed("read", t)
        context = {"threshold": job["settings"].get("threshold", DEFAULT_THRESHOLD)}
        warm = (WarmUp.like(engine.sample_outputs, include_sample=True, context=context)
                if engine.sample_outputs else None)
        runner = self.scripts.get(source, labels=model["labels"], trusted=bool(model.get("trusted")), warm_up=warm)
        outcomes = [FrameOutcome(f["frame"], f["name"], f["width"], f["height"]) for f in frames]

        decode = FrameDecoder.for_preprocessing(Preprocessing.from_dict(model["preprocessing"]))
        futures = [self.fetcher.submit(self._fetch_decode, f, decode) for f in frames]
        ok: list[int] = []  # indices of decoded frames, in the order they go to inference
        waited = [0.0]  # seconds inference spent waiting for frames, left out of its histogram

        def images() -> Iterator[np.ndarray]:
            for i, future in enumerate(futures):
                t0 = time.perf_counter()
                try:
                    image = future.result()
                except FrameError as exc:
                    outcomes[i].reason = exc.message
                    self.metrics.errors.labels(self.device, "decode").inc()
                    continue
                finally:
                    waited[0] += time.perf_counter() - t0
                ok.append(i)
                yield image

        # Frames stream through: inference starts with the first decoded frame while later ones are
        # still being fetched, and each batch of outputs goes to the script process while the next
        # batch is inferred.
        batches: list[tuple[list[int], Future]] = []
        pending: list[FrameInput] = []
        pending_idx: list[int] = []
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="script") as interpret:
            for k, outputs in enumerate(engine.infer_many(images())):
                i = ok[k]
                pending.append(FrameInput(id=outcomes[i].frame, name=outcomes[i].name, width=outcomes[i].width,
                                          height=outcomes[i].height, outputs=outputs))
                pending_idx.append(i)
                if len(pending) >= SCRIPT_BATCH:
                    batches.append((pending_idx, interpret.submit(self._interpret, runner, pending, context)))
                    pending, pending_idx = [], []
            if ok:
                per_frame = max(0.0, time.perf_counter() - began - waited[0]) / len(ok)
                for _ in ok:
                    self.metrics.inference.labels(self.device).observe(per_frame)
            if pending:
                batches.append((pending_idx, interpret.submit(self._interpret, runner, pending, context)))
            for indices, future in batches:
                for i, shapes in zip(indices, future.result()):
                    if isinstance(shapes, Exception):
                        outcomes[i].reason = f"script error: {shapes}"
                        self.metrics.errors.labels(self.device, "script").inc()
                    else:
                        outcomes[i].shapes = shapes
        return outcomes
