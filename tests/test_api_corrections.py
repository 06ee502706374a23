"""Shape corrections through the API, on the session's real cluster (Valkey, SeaweedFS, a CPU worker,
the dashboard under gunicorn): each route's happy path, every bad input a clear 4xx, the model's
output kept at revision 0, undo, stale and concurrent edits, other users, and deletion.

The job: a tiny model whose script draws one shape of each kind on every frame; frames whose name
starts with "bad" fail.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
from cluster_fixtures import new_user, register, tiny_model, wait_job
from PIL import Image

from cluster.client import ApiClient, ApiError
from cluster.objectstore import Keys, open_object_store
from cluster.store import Store

LABELS = {"1": "car", "2": "person", "3": "road"}
W, H = 64, 48

SCRIPT = '''
import numpy as np


def interpret(outputs, frame, labels, context):
    if frame["name"].startswith("bad"):
        raise ValueError("refusing to label " + frame["name"])
    w, h = frame["width"], frame["height"]
    road = np.zeros((h, w), dtype=bool)
    road[h * 3 // 4:, :] = True
    return [
        shapes.box(w * 0.1, h * 0.1, w * 0.5, h * 0.6, "1", score=0.9),
        shapes.polygon([(w * 0.6, h * 0.1), (w * 0.9, h * 0.2), (w * 0.75, h * 0.5)], "2", score=0.8),
        shapes.polyline([(w * 0.1, h * 0.7), (w * 0.5, h * 0.65), (w * 0.9, h * 0.7)], "1"),
        shapes.points([(w * 0.2, h * 0.3), (w * 0.3, h * 0.35)], "2"),
        shapes.mask(road, "3", score=0.7),
        shapes.tag("1"),
    ]
'''
KINDS = ["rectangle", "polygon", "polyline", "points", "mask", "tag"]
BOX, POLYGON, POLYLINE, POINTS, MASK, TAG = range(6)


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_job(client: ApiClient, tmp: Any, names: list[str], name: str = "corr") -> dict:
    """A finished job of the shapes script over frames called ``names`` (two frames per chunk)."""
    xml, bin_ = tiny_model(tmp)
    model = register(client, name, xml, bin_, SCRIPT, LABELS)
    dataset = client.post("/api/datasets", json={"name": name})
    for i, frame_name in enumerate(names):
        client.upload(dataset["id"], frame_name, io.BytesIO(png(i)))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "chunk_size": 2})
    return wait_job(client, job["id"])


def call(client: ApiClient, method: str, path: str, **kw: Any) -> Any:
    """Any method through the SDK's generic request (it needs nothing special for PUT and PATCH)."""
    return client.request(method, path, **kw).json()


def status_of(client: ApiClient, method: str, path: str, **kw: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        client.request(method, path, **kw)
    return caught.value.status, caught.value.message


# Frames 0-11 of the module's job; frame 2 fails. Each test that corrects a frame has one of its own.
NAMES = ["a.png", "b.png", "bad.png", *(f"f{i:02d}.png" for i in range(3, 12))]
FAILED, SPARE, ADMIN_FRAME, LAST_FRAME = 2, 7, 8, 11
LAST_CHUNK = 5  # frames 10-11, two frames per chunk


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    name, client = new_user(cluster)
    job = make_job(client, tmp_path_factory.mktemp("tiny"), NAMES)
    assert job["state"] == "completed" and job["frames_done"] == 11 and job["frames_failed"] == 1
    return {"client": client, "name": name, "job": job, "settings": cluster}


_next_frame = iter([0, 1, 3, 4, 5, 6, 9])


@pytest.fixture
def frame(world):
    """A frame of the job no other test has corrected (each test gets its own)."""
    try:
        number = next(_next_frame)
    except StopIteration:
        pytest.fail("the module's job has too few frames for its tests")
    return f"/api/jobs/{world['job']['id']}/frames/{number}/annotations"


def test_a_frame_never_corrected_shows_the_models_shapes_at_revision_0(world, frame):
    answer = world["client"].get(frame)
    assert [s["type"] for s in answer["shapes"]] == KINDS
    assert (answer["revision"], answer["revisions"], answer["head"], answer["failed"]) == (0, 0, 0, None)
    assert (answer["width"], answer["height"]) == (W, H)
    assert world["client"].get(frame + "?revision=0") == answer


def test_each_change_is_a_new_revision_and_the_models_output_stays_at_revision_0(world, frame):
    client = world["client"]
    original = client.get(frame)
    box = original["shapes"][BOX]

    moved = call(client, "PATCH", f"{frame}/shapes/{BOX}",
                 json={"base_revision": 0, "points": [1, 2, 30, 40]})
    assert (moved["revision"], moved["revisions"]) == (1, 1)
    assert moved["shapes"][BOX]["points"] == [1.0, 2.0, 30.0, 40.0]
    assert moved["shapes"][BOX]["source"] == "human" and moved["shapes"][BOX]["score"] == box["score"]

    relabelled = call(client, "PATCH", f"{frame}/shapes/{POLYGON}", json={"base_revision": 1, "label": "1"})
    assert relabelled["revision"] == 2 and relabelled["shapes"][POLYGON]["label"] == "1"
    assert relabelled["shapes"][POLYGON]["points"] == original["shapes"][POLYGON]["points"]

    mask = call(client, "PATCH", f"{frame}/shapes/{MASK}", json={"base_revision": 2, "label": "2"})
    assert mask["shapes"][MASK]["label"] == "2" and mask["shapes"][MASK]["rle"] == original["shapes"][MASK]["rle"]

    gone = call(client, "DELETE", f"{frame}/shapes/{POLYLINE}?base_revision=3")
    assert gone["revision"] == 4 and [s["type"] for s in gone["shapes"]] == ["rectangle", "polygon", "points",
                                                                            "mask", "tag"]

    drawn = {"type": "rectangle", "label": "2", "points": [5, 5, 20, 25]}
    added = call(client, "POST", f"{frame}/shapes", json={"base_revision": 4, "shape": drawn})
    assert added["revision"] == 5 and len(added["shapes"]) == 6
    assert added["shapes"][-1] == {"type": "rectangle", "label": "2", "points": [5.0, 5.0, 20.0, 25.0],
                                   "score": None, "attributes": {}, "source": "human"}

    assert client.get(frame) == added
    assert client.get(frame + "?revision=0")["shapes"] == original["shapes"]
    assert client.get(frame + "?revision=1")["shapes"][BOX]["points"] == [1.0, 2.0, 30.0, 40.0]
    assert client.get(frame + "?revision=0")["revisions"] == 5
    assert client.get(frame + "?revision=0")["head"] == 5 and added["head"] == 5

    history = client.get(frame + "/revisions")
    assert [(r["revision"], r["change"]) for r in history] == [(0, "model"), (1, "edit"), (2, "edit"), (3, "edit"),
                                                              (4, "delete"), (5, "add")]
    assert all(r["author"] == world["name"] for r in history[1:])
    assert history[0]["shapes"] == original["shapes"] and history[5]["shapes"] == added["shapes"]


def test_a_replacement_keeps_model_shapes_sent_back_unchanged_and_marks_new_ones(world, frame):
    client = world["client"]
    original = client.get(frame)
    sent = [original["shapes"][BOX], {"type": "points", "label": "car", "points": [3, 4]}]
    answer = call(client, "PUT", frame, json={"base_revision": 0, "shapes": sent})
    assert answer["revision"] == 1
    assert answer["shapes"][0] == original["shapes"][BOX] and "source" not in answer["shapes"][0]
    assert answer["shapes"][1] == {"type": "points", "label": "1", "points": [3.0, 4.0], "score": None,
                                   "attributes": {}, "source": "human"}
    emptied = call(client, "PUT", frame, json={"base_revision": 1, "shapes": []})
    assert emptied["shapes"] == [] and emptied["revision"] == 2


def test_undo_moves_the_head_back_and_a_new_change_drops_the_undone_revision(world, frame):
    client = world["client"]
    original = client.get(frame)
    call(client, "DELETE", f"{frame}/shapes/{TAG}?base_revision=0")
    call(client, "DELETE", f"{frame}/shapes/{BOX}?base_revision=1")
    back = call(client, "POST", f"{frame}/undo", json={"base_revision": 2})
    assert (back["revision"], back["revisions"], back["head"]) == (1, 2, 1)
    assert client.get(frame + "?revision=2")["head"] == 1
    assert len(back["shapes"]) == 5 and back["shapes"][BOX] == original["shapes"][BOX]
    assert [r["undone"] for r in client.get(frame + "/revisions")] == [False, False, True]

    to_model = call(client, "POST", f"{frame}/undo", json={"base_revision": 1})
    assert to_model["revision"] == 0 and to_model["shapes"] == original["shapes"]
    assert status_of(client, "POST", f"{frame}/undo", json={"base_revision": 0})[0] == 409

    redone = call(client, "PATCH", f"{frame}/shapes/{POINTS}", json={"base_revision": 0, "points": [1, 1]})
    assert (redone["revision"], redone["revisions"]) == (1, 1)
    assert [r["change"] for r in client.get(frame + "/revisions")] == ["model", "edit"]


def test_a_stale_base_revision_is_a_409_naming_the_current_one(world, frame):
    client = world["client"]
    call(client, "DELETE", f"{frame}/shapes/{TAG}?base_revision=0")
    status, message = status_of(client, "DELETE", f"{frame}/shapes/{BOX}?base_revision=0")
    assert status == 409 and "current revision is 1" in message
    status, _ = status_of(client, "PUT", frame, json={"base_revision": 7, "shapes": []})
    assert status == 409
    assert client.get(frame)["revision"] == 1 and len(client.get(frame)["shapes"]) == 5


def test_of_concurrent_changes_made_on_the_same_revision_exactly_one_is_kept(world, frame):
    client = world["client"]
    outcomes: list[Any] = []

    def replace(label: str) -> None:
        try:
            body = {"base_revision": 0, "shapes": [{"type": "rectangle", "label": label, "points": [1, 1, 9, 9]}]}
            outcomes.append(call(client, "PUT", frame, json=body))
        except ApiError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=replace, args=(str(1 + i % 3),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 1 and sorted(o for o in outcomes if not isinstance(o, dict)) == [409] * 7
    head = client.get(frame)
    assert (head["revision"], head["revisions"]) == (1, 1) and head["shapes"] == won[0]["shapes"]
    keys = list(open_object_store(world["settings"]).list_keys(
        f"{Keys.revision_prefix(world['job']['id'])}{head['frame']:08d}/"))
    assert len(keys) == 1, "the losers' objects are removed"


def test_the_corrected_frames_are_listed_with_their_head(world, frame):
    client = world["client"]
    job = world["job"]["id"]
    call(client, "POST", f"{frame}/shapes", json={"base_revision": 0, "shape": {"type": "tag", "label": "2"}})
    call(client, "POST", f"{frame}/shapes", json={"base_revision": 1, "shape": {"type": "tag", "label": "3"}})
    number = frame.split("/")[-2]
    answer = client.get(f"/api/jobs/{job}/corrections")
    frames = answer["frames"]
    assert frames[number] == 2 and all(head >= 1 for head in frames.values())
    assert str(SPARE) not in frames and str(FAILED) not in frames
    for number, head in frames.items():
        assert client.get(f"/api/jobs/{job}/frames/{number}/annotations")["revision"] == head


BAD_SHAPES = [
    ({"type": "rectangle", "label": "9", "points": [1, 1, 5, 5]}, "unknown label"),
    ({"type": "rectangle", "label": "1", "points": [1, 1, 5, 500]}, "outside"),
    ({"type": "rectangle", "label": "1", "points": [1, 1, 5]}, "coordinates"),
    ({"type": "circle", "label": "1", "points": [1, 1]}, "unknown type"),
    ({"type": "rectangle", "label": "1", "points": ["a", 1, 5, 5]}, "finite number"),
    ({"type": "rectangle", "label": "1", "points": [1, 1, 5, 5], "score": 2}, "score"),
    ({"type": "rectangle", "label": "1", "points": [1, 1, 5, 5], "source": "robot"}, "source"),
]


def _bad_inputs(frame_path: str) -> list[tuple[str, str, dict[str, Any], int, str]]:
    shape_path = f"{frame_path}/shapes"
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("PUT", frame_path, {"data": "not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ("PUT", frame_path, {"json": [1, 2]}, 400, "JSON object"),
        ("PUT", frame_path, {"json": {"base_revision": 0}}, 400, "'shapes' is required"),
        ("PUT", frame_path, {"json": {"shapes": []}}, 400, "'base_revision' is required"),
        ("PUT", frame_path, {"json": {"base_revision": "x", "shapes": []}}, 400, "integer"),
        ("PUT", frame_path, {"json": {"base_revision": True, "shapes": []}}, 400, "integer"),
        ("PUT", frame_path, {"json": {"base_revision": -1, "shapes": []}}, 400, "0 and above"),
        ("PUT", frame_path, {"json": {"base_revision": 0, "shapes": {"a": 1}}}, 400, "must be a list"),
        ("PUT", frame_path, {"json": {"base_revision": 0, "shapes": [], "extra": 1}}, 400, "unknown field"),
        ("PUT", frame_path, {"json": {"base_revision": 0, "shapes": [{"type": "tag", "label": "1"}] * 10_001}},
         400, "at most"),
        ("PUT", frame_path, {"data": '{"base_revision": 0, "shapes": [{"type": "rectangle", "label": "1", '
                                     '"points": [1, 1, NaN, 5]}]}',
                             "headers": {"Content-Type": "application/json"}}, 400, "finite"),
        ("PUT", frame_path, {"json": {"base_revision": 0, "shapes": ["box"]}}, 400, "shape 0: expected a dict"),
        ("POST", shape_path, {"json": {"base_revision": 0}}, 400, "'shape' is required"),
        ("POST", shape_path, {"json": {"base_revision": 0, "shape": [1]}}, 400, "must be an object"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0}}, 400, "nothing to change"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0, "label": 5}}, 400, "label id"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0, "label": "7"}}, 400, "unknown label"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0, "points": "1,2"}}, 400, "flat list"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0, "points": [1, 2, 3]}}, 400, "coordinates"),
        ("PATCH", f"{shape_path}/0", {"json": {"base_revision": 0, "points": [-900, 2, 3, 4]}}, 400, "outside"),
        ("PATCH", f"{shape_path}/{MASK}", {"json": {"base_revision": 0, "points": [0, 0, 4, 4]}}, 400, "mask"),
        ("PATCH", f"{shape_path}/{TAG}", {"json": {"base_revision": 0, "points": [0, 0]}}, 400, "no points"),
        ("PATCH", f"{shape_path}/6", {"json": {"base_revision": 0, "label": "1"}}, 404, "6 shape"),
        ("DELETE", f"{shape_path}/99", {"params": {"base_revision": 0}}, 404, "no shape 99"),
        ("DELETE", f"{shape_path}/0", {}, 400, "'base_revision' is required"),
        ("POST", f"{frame_path}/undo", {"json": {}}, 400, "'base_revision' is required"),
        ("POST", f"{frame_path}/undo", {"json": {"base_revision": 0}}, 409, "nothing to undo"),
        ("GET", frame_path, {"params": {"revision": "abc"}}, 400, "integer"),
        ("GET", frame_path, {"params": {"revision": 3}}, 404, "no revision 3"),
    ]
    for shape, words in BAD_SHAPES:
        cases.append(("POST", shape_path, {"json": {"base_revision": 0, "shape": shape}}, 400, words))
        cases.append(("PUT", frame_path, {"json": {"base_revision": 0, "shapes": [{"type": "tag", "label": "1"},
                                                                                  shape]}}, 400, words))
    return cases


def test_every_bad_input_is_a_clear_4xx_and_changes_nothing(world):
    client = world["client"]
    frame_path = f"/api/jobs/{world['job']['id']}/frames/{SPARE}/annotations"
    before = client.get(frame_path)
    for method, path, kw, want, words in _bad_inputs(frame_path):
        status, message = status_of(client, method, path, **kw)
        assert status == want and words.lower() in message.lower(), (method, path, kw, status, message)
    assert client.get(frame_path) == before
    assert client.get(frame_path + "/revisions")[1:] == []


def test_a_failed_frame_cannot_be_corrected(world):
    client = world["client"]
    path = f"/api/jobs/{world['job']['id']}/frames/{FAILED}/annotations"
    assert "refusing to label bad.png" in client.get(path)["failed"]
    for method, tail, kw in [("PUT", "", {"json": {"base_revision": 0, "shapes": []}}),
                             ("POST", "/shapes", {"json": {"base_revision": 0,
                                                           "shape": {"type": "tag", "label": "1"}}}),
                             ("DELETE", "/shapes/0", {"params": {"base_revision": 0}})]:
        status, message = status_of(client, method, path + tail, **kw)
        assert status == 409 and "failed" in message


def test_a_frame_whose_chunk_is_not_processed_is_a_404_to_read_and_a_409_to_change(world):
    client = world["client"]
    job = world["job"]["id"]
    objects = open_object_store(world["settings"])
    key = Keys.chunk_result(job, LAST_CHUNK)
    saved = objects.get_bytes(key)
    objects.delete(key)  # as before the worker wrote it
    try:
        path = f"/api/jobs/{job}/frames/{LAST_FRAME}/annotations"
        assert status_of(client, "GET", path)[0] == 404
        status, message = status_of(client, "PUT", path, json={"base_revision": 0, "shapes": []})
        assert status == 409 and "not processed" in message
    finally:
        objects.put_bytes(key, saved)


def test_a_frame_outside_the_job_is_a_404(world):
    path = f"/api/jobs/{world['job']['id']}/frames/500/annotations"
    assert status_of(world["client"], "PUT", path, json={"base_revision": 0, "shapes": []})[0] == 404


def test_a_user_who_cannot_see_the_job_gets_404_everywhere(world):
    _, other = new_user(world["settings"])
    job = world["job"]["id"]
    path = f"/api/jobs/{job}/frames/0/annotations"
    for method, tail, kw in [("GET", "", {}), ("GET", "/revisions", {}),
                             ("PUT", "", {"json": {"base_revision": 0, "shapes": []}}),
                             ("POST", "/shapes", {"json": {"base_revision": 0, "shape": {"type": "tag",
                                                                                         "label": "1"}}}),
                             ("PATCH", "/shapes/0", {"json": {"base_revision": 0, "label": "1"}}),
                             ("DELETE", "/shapes/0", {"params": {"base_revision": 0}}),
                             ("POST", "/undo", {"json": {"base_revision": 0}})]:
        assert status_of(other, method, path + tail, **kw)[0] == 404, (method, tail)
    assert status_of(other, "GET", f"/api/jobs/{job}/corrections")[0] == 404


def test_an_admin_can_correct_another_users_job(world, admin):
    path = f"/api/jobs/{world['job']['id']}/frames/{ADMIN_FRAME}/annotations"
    answer = call(admin, "DELETE", f"{path}/shapes/{TAG}", params={"base_revision": 0})
    assert answer["revision"] == 1 and len(answer["shapes"]) == 5


def test_deleting_the_job_removes_its_revisions_from_s3_and_redis(world, tmp_path):
    client = world["client"]
    job = make_job(client, tmp_path, ["x.png", "y.png"], name="gone")["id"]
    path = f"/api/jobs/{job}/frames/1/annotations"
    call(client, "DELETE", f"{path}/shapes/0", params={"base_revision": 0})
    call(client, "DELETE", f"{path}/shapes/0", params={"base_revision": 1})
    call(client, "POST", f"{path}/undo", json={"base_revision": 2})
    objects = open_object_store(world["settings"])
    store = Store.from_settings(world["settings"])
    assert len(list(objects.list_keys(Keys.revision_prefix(job)))) == 2
    assert store.corrections.history(job, 1).top == 2

    client.delete(f"/api/jobs/{job}")
    assert list(objects.list_keys(Keys.revision_prefix(job))) == []
    assert list(objects.list_keys(f"jobs/{job}/")) == []
    assert store.corrections.history(job, 1).top == 0 and store.corrections.heads(job) == {}
    assert status_of(client, "GET", path)[0] == 404
