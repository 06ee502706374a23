"""Warm-up frames: a fresh script process interprets made-up outputs before its first real frame."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from cluster.annotations import rle
from cluster.scripts import warmup
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.pool import ScriptPool
from cluster.scripts.runner import FrameInput, ScriptRunner
from cluster.scripts.warmup import WarmUp, synthetic_like

pytestmark = pytest.mark.integration  # script processes (ScriptRunner, ScriptPool)

LABELS = {"1": "person"}

COUNTING = textwrap.dedent("""
    calls = []

    def interpret(outputs, frame, labels, context):
        calls.append(frame.id)
        return [{"type": "rectangle", "label": 1, "points": [0, 0, 1 + len(calls), 2],
                 "attributes": {"seen": ",".join(str(c) for c in calls)}}]
""")


def frame(i: int = 7) -> FrameInput:
    return FrameInput(i, 64, 48, {"prob": np.full((1, 1, 8, 8), 0.25, np.float32)})


def test_the_script_sees_the_warm_up_frames_before_the_first_real_one_and_the_caller_never_does() -> None:
    warm = WarmUp.like(frame().outputs, include_sample=True, width=64, height=48)
    with ScriptRunner(COUNTING, LABELS, limits=ScriptLimits(timeout=10), warm_up=warm) as r:
        r.start()
        (shapes,) = r.run([frame(7)])
        seen = [int(v) for v in shapes[0]["attributes"]["seen"].split(",")]
        assert seen[-1] == 7
        assert len(seen) == 1 + warmup.ROUNDS * 3  # the sample, a ramp and noise, each ROUNDS times
        assert all(v < 0 for v in seen[:-1])
        assert len(set(seen)) == len(seen)
        assert r.stats.last_warm_up_s > 0
        (again,) = r.run([frame(8)])  # the same process: no second warm-up
        assert again[0]["attributes"]["seen"].endswith(",7,8")


def test_without_a_warm_up_the_first_real_frame_is_the_first_call() -> None:
    with ScriptRunner(COUNTING, LABELS, limits=ScriptLimits(timeout=10)) as r:
        (shapes,) = r.run([frame(3)])
        assert shapes[0]["attributes"]["seen"] == "3"


def test_a_script_that_fails_on_made_up_outputs_is_still_warmed_and_real_frames_succeed() -> None:
    src = textwrap.dedent("""
        def interpret(outputs, frame, labels, context):
            if frame.id < 0:
                raise ValueError("nonsense outputs")
            return [{"type": "tag", "label": 1}]
    """)
    with ScriptRunner(src, LABELS, limits=ScriptLimits(timeout=10), warm_up=WarmUp.like(frame().outputs)) as r:
        (shapes,) = r.run([frame()])
        assert [s["type"] for s in shapes] == ["tag"]
        assert r.stats.warm_up_failures == 0
        assert r.stats.spawns == 1


def test_a_script_that_hangs_on_a_warm_up_frame_loses_its_warm_up_but_not_its_frames() -> None:
    src = textwrap.dedent("""
        def interpret(outputs, frame, labels, context):
            while frame.id < 0:
                pass
            return [{"type": "tag", "label": 1}]
    """)
    with ScriptRunner(src, LABELS, limits=ScriptLimits(timeout=1.0), warm_up=WarmUp.like(frame().outputs)) as r:
        (shapes,) = r.run([frame()])
        assert shapes[0]["type"] == "tag"
        assert r.stats.warm_up_failures == 1
        assert r.stats.spawns == 2  # killed during the warm-up, started again without it
        (shapes,) = r.run([frame()])
        assert shapes[0]["type"] == "tag" and r.stats.spawns == 2


def test_a_script_that_crashes_its_process_on_a_warm_up_frame_is_started_again_without_it() -> None:
    src = textwrap.dedent("""
        import os

        def interpret(outputs, frame, labels, context):
            if frame.id < 0:
                os._exit(9)
            return [{"type": "tag", "label": 1}]
    """)
    warm = WarmUp.like(frame().outputs)
    with ScriptRunner(src, LABELS, trusted=True, limits=ScriptLimits(timeout=10), warm_up=warm) as r:
        (shapes,) = r.run([frame()])
        assert shapes[0]["type"] == "tag"
        assert r.stats.warm_up_failures == 1 and r.stats.spawns == 2


def test_a_pool_warms_the_processes_of_a_script_with_the_first_warm_up_offered() -> None:
    with ScriptPool(ScriptLimits(timeout=10)) as pool:
        first = pool.get(COUNTING, LABELS, warm_up=WarmUp.like(frame().outputs), prestart=False)
        (shapes,) = first.run([frame(5)])
        assert len(shapes[0]["attributes"]["seen"].split(",")) == 1 + warmup.ROUNDS * 2
        second = pool.get(COUNTING, LABELS, warm_up=WarmUp.like(frame().outputs, include_sample=True))
        (shapes,) = second.run([frame(6)])  # the same process, already warm
        assert shapes[0]["attributes"]["seen"].endswith(",5,6")


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.uint8, np.bool_])
def test_made_up_outputs_keep_names_shapes_and_dtypes_and_stay_in_range(dtype: type) -> None:
    sample = {"a": np.zeros((1, 1, 100, 7), dtype), "b": np.zeros((2, 3), dtype)}
    frames = synthetic_like(sample)
    assert len(frames) == 2
    for out in frames:
        assert set(out) == {"a", "b"}
        for name, arr in out.items():
            assert arr.shape == sample[name].shape and arr.dtype == np.dtype(dtype)
            values = arr.astype(np.float64)
            top = 1.0 if np.dtype(dtype).kind in "fb" else 8.0
            assert values.min() >= 0 and values.max() <= top
    ramp = frames[0]["a"].astype(np.float64).ravel()
    assert np.all(np.diff(ramp) >= 0) and ramp[-1] > ramp[0]


def test_made_up_masks_look_like_objects_not_pixel_noise() -> None:
    """A 256x256 probability map thresholded at 0.5 gives a few blobs (at most 3 edges down a column
    of the 4x4 grid), not the ~30,000 RLE runs of pixel noise."""
    for out in synthetic_like({"mask": np.zeros((1, 1, 256, 256), np.float32)}):
        m = out["mask"][0, 0] > 0.5
        counts = rle.encode(m)["counts"]
        assert len(counts) <= 4 * 256 + 2
    noise = synthetic_like({"mask": np.zeros((1, 1, 256, 256), np.float32)})[1]["mask"]
    assert 0.2 < float((noise > 0.5).mean()) < 0.8  # both sides of a threshold are exercised


def test_a_worker_warms_a_new_script_process_on_its_models_outputs_before_the_jobs_frames(cluster, tmp_path) -> None:
    """The worker's engine infers a blank frame when it is built; the script process then sees that
    output and made-up ones (negative frame ids) before the job's first frame, and the job's
    results hold only the job's frames."""
    import io
    import uuid

    from cluster_fixtures import new_user, register, tiny_model, wait_job
    from PIL import Image

    script = COUNTING + f"\n# {uuid.uuid4()}: a script no worker has a process for yet\n"
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path / "model")
    model = register(client, "warm-counting", xml, bin_, script, LABELS)
    dataset = client.post("/api/datasets", json={"name": "warm-up"})
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(buf, format="PNG")
        buf.seek(0)
        client.upload(dataset["id"], f"f{i}.png", buf)
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    status = wait_job(client, job["id"])
    assert status["state"] == "completed" and status["frames_done"] == 3, status
    coco = client.get(f"/api/jobs/{job['id']}/export?format=coco")
    seen = sorted((ann["attributes"]["seen"] for ann in coco["annotations"]), key=len)
    assert len(seen) == 3  # one shape per real frame, none from the warm-up
    first = [int(v) for v in seen[0].split(",")]
    assert len(first) == 1 + warmup.ROUNDS * 3  # the blank frame's output, a ramp and noise
    assert all(v < 0 for v in first[:-1]) and first[-1] >= 0


def test_outputs_too_big_for_a_message_skip_the_warm_up_without_costing_a_process() -> None:
    big = {"prob": np.zeros((1, 1, 1024, 1024), np.float32)}  # 4 MiB, over half of a 4 MiB message cap
    with ScriptRunner(COUNTING, LABELS, limits=ScriptLimits(timeout=10, max_message=4 * 1024 * 1024),
                      warm_up=WarmUp.like(big)) as r:
        (shapes,) = r.run([frame(3)])
        assert shapes[0]["attributes"]["seen"] == "3"
        assert r.stats.spawns == 1 and r.stats.warm_up_failures == 0
