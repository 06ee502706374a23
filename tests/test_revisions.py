"""The frame-revision model (``cluster.annotations.revisions``): the history's moves and the list edits."""

from __future__ import annotations

import pytest

from cluster.annotations import revisions as rv
from cluster.annotations.revisions import FrameHistory, Revision
from cluster.annotations.shapes import MAX_SHAPES
from cluster.errors import Conflict, InvalidInput, NotFound

BOX = {"type": "rectangle", "label": "1", "points": [1.0, 2.0, 3.0, 4.0], "score": 0.9, "attributes": {}}
LINE = {"type": "polyline", "label": "2", "points": [0.0, 0.0, 5.0, 5.0], "score": None, "attributes": {}}
MASK = {"type": "mask", "label": "3", "points": [0.0, 0.0, 1.0, 1.0], "score": 0.5, "attributes": {},
        "rle": {"size": [2, 2], "counts": [0, 4]}}


def rev(n: int, author: str = "ann") -> Revision:
    return Revision(n, author, 1000.0 + n, "edit", f"jobs/j/revisions/00000001/{n:06d}-x.msgpack")


def test_a_frame_never_corrected_is_at_revision_0_with_nothing_kept():
    history = FrameHistory()
    assert (history.head, history.top, history.revisions) == (0, 0, ())


def test_each_change_becomes_the_next_revision_and_the_head():
    history = FrameHistory().committed(rev(1)).committed(rev(2))
    assert history.head == 2 and history.top == 2
    assert [r.revision for r in history.revisions] == [1, 2]
    assert history.get(1).key.endswith("000001-x.msgpack")


def test_undo_moves_only_the_head_and_keeps_the_revision_above_it():
    history = FrameHistory().committed(rev(1)).committed(rev(2)).undone()
    assert history.head == 1 and history.top == 2
    assert history.get(2).revision == 2


def test_a_change_after_an_undo_drops_the_revisions_above_the_old_head():
    undone = FrameHistory().committed(rev(1)).committed(rev(2)).committed(rev(3)).undone().undone()
    assert [r.revision for r in undone.dropped_by_commit()] == [2, 3]
    after = undone.committed(rev(2, author="bob"))
    assert after.head == 2 and after.top == 2
    assert [(r.revision, r.author) for r in after.revisions] == [(1, "ann"), (2, "bob")]


def test_undo_at_the_models_output_is_a_conflict():
    with pytest.raises(Conflict, match="nothing to undo"):
        FrameHistory().undone()


def test_a_stale_base_is_a_conflict_naming_the_current_revision():
    history = FrameHistory().committed(rev(1))
    history.check_base(1)
    with pytest.raises(Conflict, match="current revision is 1") as caught:
        history.check_base(0)
    assert caught.value.details["revision"] == 1


def test_a_revision_must_follow_the_head():
    with pytest.raises(ValueError):
        FrameHistory().committed(rev(2))


def test_a_revision_not_kept_is_not_found():
    with pytest.raises(NotFound, match="revisions 0-1"):
        FrameHistory().committed(rev(1)).get(2)


def test_the_history_survives_its_stored_form():
    history = FrameHistory().committed(rev(1)).committed(rev(2)).undone()
    assert FrameHistory.load(history.head, history.dump()) == history
    assert FrameHistory.load(0, None) == FrameHistory()


def test_an_added_shape_is_a_persons_and_the_input_list_is_left_alone():
    shapes = [BOX]
    out = rv.added(shapes, LINE)
    assert out == [BOX, {**LINE, "source": "human"}]
    assert shapes == [BOX]


def test_an_edit_keeps_the_score_and_marks_the_shape_a_persons():
    moved = rv.edit_of(BOX, points=[10.0, 20.0, 30.0, 40.0])
    assert moved == {**BOX, "points": [10.0, 20.0, 30.0, 40.0], "source": "human"}
    relabelled = rv.edit_of(BOX, label="2")
    assert relabelled["label"] == "2" and relabelled["score"] == 0.9 and relabelled["points"] == BOX["points"]
    assert rv.edited([BOX, LINE], 0, moved) == [moved, LINE]


def test_a_masks_label_can_change_but_not_its_points():
    assert rv.edit_of(MASK, label="1")["label"] == "1"
    with pytest.raises(InvalidInput, match="mask's points cannot be set"):
        rv.edit_of(MASK, points=[0.0, 0.0, 2.0, 2.0])


def test_an_edit_that_changes_nothing_is_refused():
    with pytest.raises(InvalidInput, match="nothing to change"):
        rv.edit_of(BOX)


def test_a_deleted_shape_leaves_the_others_in_order():
    assert rv.deleted([BOX, LINE, MASK], 1) == [BOX, MASK]


@pytest.mark.parametrize("index", [-1, 3, 99])
def test_an_index_outside_the_list_is_not_found_naming_how_many_shapes_there_are(index):
    with pytest.raises(NotFound, match="3 shape"):
        rv.deleted([BOX, LINE, MASK], index)
    with pytest.raises(NotFound):
        rv.edited([BOX, LINE, MASK], index, BOX)


def test_an_index_in_an_empty_list_is_not_found():
    with pytest.raises(NotFound, match="no shapes"):
        rv.shape_at([], 0)


def test_a_replacement_keeps_the_source_of_shapes_sent_back_unchanged_and_marks_the_others_a_persons():
    model_box = dict(BOX)
    person_line = {**LINE, "source": "human"}
    moved = {**BOX, "points": [2.0, 2.0, 3.0, 4.0]}
    out = rv.replaced([model_box, person_line], [dict(BOX), dict(LINE), moved])
    assert out[0] == BOX and "source" not in out[0]
    assert out[1]["source"] == "human"
    assert out[2] == {**moved, "source": "human"}


def test_a_sent_source_of_model_does_not_make_a_new_shape_the_models():
    out = rv.replaced([BOX], [{**LINE, "source": "model"}])
    assert out[0]["source"] == "human"


def test_more_shapes_than_a_frame_may_have_are_refused():
    with pytest.raises(InvalidInput, match=str(MAX_SHAPES)):
        rv.added([BOX] * MAX_SHAPES, BOX)
