"""The annotation data model: shape rules, the COCO RLE codec, chunk results and chunk plans."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import skimage.data

from cluster.annotations import rle
from cluster.annotations.chunk_result import ChunkResult
from cluster.annotations.shapes import POINT_RULES, SHAPE_TYPES
from cluster.objectstore import Keys

# pycocotools' decode warns under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


# -- shapes ----------------------------------------------------------------------------------------
def test_every_shape_kind_has_a_point_rule():
    assert set(POINT_RULES) == set(SHAPE_TYPES)


@pytest.mark.parametrize("kind, good, bad", [
    ("rectangle", [4], [0, 2, 6]),
    ("mask", [4], [0, 8]),
    ("polygon", [6, 8, 100], [0, 4, 7]),
    ("polyline", [4, 6], [2, 5]),
    ("points", [2, 4], [0, 3]),
    ("tag", [0], [2]),
])
def test_point_rules_count_coordinates(kind, good, bad):
    rule = POINT_RULES[kind]
    assert all(rule.allows(n) for n in good)
    assert not any(rule.allows(n) for n in bad)


# -- rle -------------------------------------------------------------------------------------------
def test_rle_encoding_is_column_major_and_starts_with_a_run_of_zeros():
    m = np.array([[1, 0, 1], [1, 1, 0]], dtype=bool)
    # column-major: 1,1 | 0,1 | 1,0
    assert rle.encode(m) == {"size": [2, 3], "counts": [0, 2, 1, 2, 1]}
    assert rle.encode(np.zeros((2, 2), bool)) == {"size": [2, 2], "counts": [4]}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_rle_round_trips_and_agrees_with_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (7, 5), (48, 64), (33, 1)]:
        m = rng.random((h, w)) > 0.6
        r = rle.encode(m)
        assert sum(r["counts"]) == h * w
        assert np.array_equal(rle.decode(r), m)
        coco = mask_utils.frPyObjects(r, h, w)
        assert np.array_equal(mask_utils.decode(coco).astype(bool), m)
        assert rle.area(r) == int(mask_utils.area(coco)) == int(m.sum())
        x, y, bw, bh = mask_utils.toBbox(coco).tolist()
        assert rle.bbox(r) == pytest.approx([x, y, x + bw, y + bh])


def test_rle_bbox_handles_runs_that_span_columns_and_empty_masks():
    m = np.zeros((5, 6), bool)
    m[3:, 1] = True
    m[:2, 2] = True  # one run from column 1 into column 2
    assert rle.bbox(rle.encode(m)) == [1.0, 0.0, 3.0, 5.0]
    assert rle.bbox(rle.encode(np.zeros((4, 4), bool))) == [0.0, 0.0, 0.0, 0.0]


def test_rle_of_a_full_hd_mask_with_many_runs_round_trips():
    m = np.zeros((1080, 1920), bool)
    m[100:900, 300:1500] = True
    m[::7, ::5] ^= True
    assert np.array_equal(rle.decode(rle.encode(m)), m)


def test_rle_decode_rejects_counts_that_do_not_cover_the_mask():
    with pytest.raises(ValueError, match="sum to 5"):
        rle.decode({"size": [2, 3], "counts": [2, 3]})


def test_rle_matches_pycocotools_on_real_masks():
    coco_mask = pytest.importorskip("pycocotools.mask")
    camera = skimage.data.camera() < 60
    camera[0, :] = True  # touches the first row and column: runs start with 0 zeros
    for mask in (skimage.data.coins() > 120, camera, np.zeros((5, 7), bool), np.ones((5, 7), bool)):
        ours = rle.encode(mask)
        theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert coco_mask.frPyObjects(ours, *mask.shape)["counts"] == theirs["counts"]
        assert (rle.decode(ours) == mask).all()
        area, (x0, y0, x1, y1) = rle.area_bbox(ours)
        assert area == rle.area(ours) == coco_mask.area(theirs)
        if area:
            assert [x0, y0, x1 - x0, y1 - y0] == coco_mask.toBbox(theirs).tolist()
    assert rle.encode(camera)["counts"][0] == 0


def test_bad_rle_is_refused():
    with pytest.raises(ValueError, match="sum to"):
        rle.decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="compressed"):
        rle.decode({"size": [2, 2], "counts": "04"})  # numpy alone would read it as [4]
    with pytest.raises(ValueError, match="flat"):
        rle.decode({"size": [2, 2], "counts": [[2], [2]]})
    with pytest.raises(ValueError, match="negative"):
        rle.area_bbox({"size": [2, 2], "counts": [5, -1]})


# -- chunk results ---------------------------------------------------------------------------------
def test_a_chunk_result_has_the_bytes_and_key_results_were_always_stored_with():
    frames = [{"frame": 4, "name": "a.jpg", "width": 8, "height": 6, "shapes": [
        {"type": "mask", "label": "1", "points": [0.0, 0.0, 8.0, 6.0], "score": 0.5, "attributes": {},
         "rle": {"size": [6, 8], "counts": [0, 48]}}]}]
    failed = [{"frame": 6, "name": "b.jpg", "reason": "corrupt image"}]
    # what workers wrote before ChunkResult: ObjectStore.put_msgpack of this dict
    before = msgpack.packb({"job": "j1", "chunk": 3, "frames": frames, "failed": failed}, use_bin_type=True)
    result = ChunkResult("j1", 3, frames, failed)
    assert result.dump() == before
    assert ChunkResult.load(before) == result
    assert result.key == Keys.chunk_result("j1", 3) == "jobs/j1/chunks/00000003.msgpack"
    assert result.annotated(4) == frames[0] and result.annotated(6) is None
    assert result.failure(6) == failed[0] and result.failure(4) is None
    given_up = ChunkResult("j1", 3, failed=failed)
    assert given_up.dump() == msgpack.packb({"job": "j1", "chunk": 3, "frames": [], "failed": failed},
                                            use_bin_type=True)


def test_rle_decodes_to_either_memory_order_with_the_same_pixels():
    mask = skimage.data.coins() > 120
    r = rle.encode(mask)
    c, f = rle.decode(r), rle.decode(r, order="F")
    assert c.flags.c_contiguous and f.flags.f_contiguous
    assert np.array_equal(c, mask) and np.array_equal(f, mask)
