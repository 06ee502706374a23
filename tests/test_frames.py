import pytest

from cluster.errors import InvalidInput
from cluster.jobs.plan import ChunkPlan, FrameRange, parse_frames


def test_a_selection_with_a_step_keeps_every_other_frame_and_includes_the_end():
    r = parse_frames("0-9:2", 100)
    assert (r.start, r.stop, r.step) == (0, 10, 2)
    assert len(r) == 5


def test_an_empty_selection_means_the_whole_dataset():
    assert parse_frames(None, 7) == FrameRange(0, 7, 1)
    assert parse_frames("", 7) == FrameRange(0, 7, 1)


def test_an_open_ended_selection_runs_to_the_last_frame():
    assert parse_frames("5-", 7) == FrameRange(5, 7, 1)


def test_a_selection_past_the_dataset_is_clipped_or_refused():
    assert parse_frames("0-999:2", 10) == FrameRange(0, 10, 2)
    with pytest.raises(InvalidInput, match="starts after"):
        parse_frames("20-30", 10)


@pytest.mark.parametrize("spec", ["abc", "5-2", "1-2:0", "-"])
def test_a_malformed_selection_is_refused_with_a_clear_message(spec):
    with pytest.raises(InvalidInput):
        parse_frames(spec, 100)


def test_chunks_cover_every_selected_frame_exactly_once():
    selection = parse_frames("3-1000:3", 2000)
    chunks = ChunkPlan(selection, 16).chunks()
    covered = [f for c in chunks for f in range(c.start, c.stop, c.step)]
    assert covered == list(range(3, 1001, 3))
    assert all(len(c) <= 16 for c in chunks)


@pytest.mark.parametrize("spec, chunk_size", [("3-1000:3", 16), ("0-9", 3), ("5-5", 1), ("1-31:3", 2), ("", 7)])
def test_a_chunk_plan_finds_the_chunk_of_every_selected_frame(spec, chunk_size):
    selection = parse_frames(spec, 1000)
    plan = ChunkPlan(selection, chunk_size)
    chunks = plan.chunks()
    assert plan.count == len(chunks) == -(-len(selection) // chunk_size)
    for index, chunk in enumerate(chunks):
        assert plan.chunk(index) == chunk
        for frame in range(chunk.start, chunk.stop, chunk.step):
            assert plan.includes(frame) and plan.chunk_of(frame) == index
    outside = [f for f in range(selection.start - 1, selection.stop + 2) if f not in range(*selection.to_list())]
    assert not any(plan.includes(f) for f in outside)
    with pytest.raises(ValueError):
        plan.chunk_of(selection.stop)


def test_a_chunk_plan_is_read_back_from_the_job_record():
    job = {"frames": [3, 1001, 3], "settings": {"chunk_size": 16, "threshold": 0.5}}
    plan = ChunkPlan.of_job(job)
    assert plan == ChunkPlan(FrameRange(3, 1001, 3), 16) and plan.span == 48
    assert plan.chunk(20) == FrameRange(963, 1001, 3)  # the last one is short


def test_a_chunk_plan_refuses_chunks_of_no_frames():
    with pytest.raises(InvalidInput, match="at least 1"):
        ChunkPlan(FrameRange(0, 10), 0)


# -- chunk sizes ------------------------------------------------------------------------------------
from cluster.jobs.plan import ChunkSizing, adaptive_chunk_size  # noqa: E402

SIZING = ChunkSizing(default=16, target_s=1.0, maximum=256)


def test_before_a_models_speed_is_known_chunks_have_the_default_size():
    assert adaptive_chunk_size(None, 100_000, SIZING) == 16
    assert adaptive_chunk_size(float("nan"), 100_000, SIZING) == 16


def test_a_fast_model_gets_chunks_of_about_the_target_time_in_multiples_of_16():
    # 10 ms a frame: 100 frames is 1 s, rounded down to 96
    assert adaptive_chunk_size(0.010, 100_000, SIZING) == 96
    assert adaptive_chunk_size(0.0001, 100_000, SIZING) == 256


def test_a_slow_model_keeps_the_default_size_as_the_least():
    assert adaptive_chunk_size(0.061, 100_000, SIZING) == 16
    assert adaptive_chunk_size(5.0, 100_000, SIZING) == 16


def test_a_small_job_keeps_enough_chunks_to_spread_over_workers():
    # 400 frames: at most 400 / 8 = 50 frames a chunk, however fast the model
    assert adaptive_chunk_size(0.001, 400, SIZING) == 50
    assert adaptive_chunk_size(0.001, 40, SIZING) == 16
