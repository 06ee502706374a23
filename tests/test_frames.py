import pytest

from cluster.errors import InvalidInput
from cluster.frames import FrameRange, parse_frames, plan_chunks


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
    chunks = plan_chunks(selection, 16)
    covered = [f for c in chunks for f in range(c.start, c.stop, c.step)]
    assert covered == list(range(3, 1001, 3))
    assert all(len(c) <= 16 for c in chunks)
