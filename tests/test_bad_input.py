"""Issue 9, bad input: every finding reproduced, now refused or handled with a clear message, and
nothing else of the same upload lost.

Pure tests call ingest, decode and the export writers directly; the ones named "over the API" run
against the session cluster (gunicorn dashboard, a CPU worker, Valkey, SeaweedFS) or, for the
request-size limit, the Flask app on Redis db 10.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile

import av
import numpy as np
import psutil
import pytest
from cluster_fixtures import FlaskApi, new_user, register, tiny_model, wait_job
from PIL import Image

from cluster.broker.queues import normalize_device
from cluster.client import ApiError
from cluster.config import Settings
from cluster.datasets import Frame, IngestLimits, Rejected, Truncated, ingest, iter_upload
from cluster.datasets.names import safe_name
from cluster.errors import FrameError, InvalidInput
from cluster.export import write_coco, write_cvat, write_masks
from cluster.services.models import parse_label_map
from cluster.workers import decode

# PIL warns when it opens the 13000x13000 header; the point here is that nothing decodes it.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

EVIL = "../../../../tmp/evil_upload.jpg"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41"


def _jpeg(seed: int = 0, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _mkv(frames: int = 60, rate: int = 30) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            rgb = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """The finding's file: a small PNG declaring 13000x13000 pixels (169 Mpx, 507 MB as RGB)."""
    data = _png(13000, 13000)
    assert len(data) < 1 << 20
    return data


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """The finding's file: a ~1 MB zip of one 'video', an MP4 header then 1 GiB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("clip.mp4", "w", force_zip64=True) as member:
            member.write(MP4_HEAD)
            zeros = bytes(1 << 20)
            for _ in range(1024):
                member.write(zeros)
        zf.writestr("ok.jpg", _jpeg(1))
    data = buf.getvalue()
    assert len(data) < 2 << 20
    return data


@pytest.fixture
def fresh_budget():
    """The decode budget is per process: tests set their own and leave the default behind."""
    yield
    decode._budget = None


def _rss() -> int:
    return psutil.Process().memory_info().rss


# ---------------------------------------------------------------------------------------------
# Pixel limit


def test_a_13000x13000_png_is_refused_from_its_header_and_the_other_files_of_the_upload_are_added(huge_png):
    before = _rss()
    (alone,) = iter_upload("huge.png", huge_png)
    results = list(iter_upload("set.zip", _zip([("huge.png", huge_png), ("small.jpg", _jpeg())])))
    grown = _rss() - before
    assert alone == Rejected("huge.png", "image too large: 13000x13000 pixels (limit 40000000)")
    assert [r.name for r in results] == ["set.zip/huge.png", "set.zip/small.jpg"]
    assert results[0].reason.startswith("image too large: 13000x13000 pixels")
    assert isinstance(results[1], Frame) and (results[1].width, results[1].height) == (64, 48)
    assert grown < 200 << 20, f"RSS grew {grown >> 20} MB: the PNG was decoded"


def test_the_pixel_limit_is_a_setting(monkeypatch):
    assert IngestLimits().max_image_pixels == Settings().max_frame_pixels == 40_000_000
    small = IngestLimits.from_settings(Settings(max_frame_pixels=64 * 48 - 1))
    (result,) = iter_upload("a.jpg", _jpeg(), limits=small)
    assert result == Rejected("a.jpg", f"image too large: 64x48 pixels (limit {64 * 48 - 1})")
    monkeypatch.setenv("PRELABEL_MAX_FRAME_PIXELS", "1000")
    assert IngestLimits.from_env().max_image_pixels == 1000
    (result,) = iter_upload("a.jpg", _jpeg())  # no limits given: this process's settings
    assert result.reason == "image too large: 64x48 pixels (limit 1000)"


def test_a_worker_fails_an_oversized_frame_from_its_header_without_decoding_it(huge_png, fresh_budget):
    decode.configure(40_000_000)
    before = _rss()
    with pytest.raises(FrameError) as err:
        decode.FrameDecoder(target=(256, 256), resize="linear")(huge_png, "frame 7 huge.png")
    grown = _rss() - before
    assert str(err.value) == ("frame 7 huge.png: frame too large: 13000x13000 pixels (limit 40000000, "
                              "PRELABEL_MAX_FRAME_PIXELS); not decoded")
    assert grown < 200 << 20, f"RSS grew {grown >> 20} MB: the frame was decoded"
    assert decode.FrameDecoder()(_jpeg(), "small.jpg").shape == (48, 64, 3)  # the next frame is fine


def test_a_worker_decodes_big_frames_one_at_a_time_and_small_ones_freely(fresh_budget):
    budget = decode.configure(30_000_000)
    big = _png(6000, 4000)  # 24 Mpx: allowed, but two at once would exceed the budget
    shapes, errors = [], []

    def work(data: bytes) -> None:
        try:
            shapes.append(decode.decode_rgb(data, "f").shape)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(big,)) for _ in range(4)]
    threads += [threading.Thread(target=work, args=(_jpeg(i),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(shapes).count((4000, 6000, 3)) == 4 and len(shapes) == 12
    assert budget.peak_held == 24_000_000  # never two big frames at once; small ones hold nothing


def test_ingest_verifies_big_images_one_at_a_time_too():
    from cluster.datasets.budget import shared_budget

    limits = IngestLimits(max_image_pixels=30_000_001)  # a capacity of its own, for this test
    big = _png(6000, 4000)
    results: list = []
    threads = [threading.Thread(target=lambda: results.extend(iter_upload("big.png", big, limits=limits)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [type(r) for r in results] == [Frame] * 3
    assert shared_budget(30_000_001).peak_held == 24_000_000


# ---------------------------------------------------------------------------------------------
# Archives and upload size


@pytest.mark.integration  # deflates 1 GiB to build its zip bomb: seconds of CPU
def test_a_zip_bomb_with_an_mp4_header_is_refused_before_anything_is_written(zip_bomb, monkeypatch):
    spools = []
    real = ingest.tempfile.TemporaryFile
    monkeypatch.setattr(ingest.tempfile, "TemporaryFile", lambda *a, **kw: spools.append(1) or real(*a, **kw))
    results = list(iter_upload("bomb.zip", zip_bomb))
    assert spools == []  # nothing spooled to /tmp (it used to write 1 GiB there)
    assert [r.name for r in results] == ["bomb.zip/clip.mp4", "bomb.zip/ok.jpg"]
    assert results[0].reason.startswith(f"zip bomb refused: {len(MP4_HEAD) + (1 << 30)} bytes compressed into ")
    assert "limit 100); not extracted" in results[0].reason
    assert isinstance(results[1], Frame)


def test_archive_limits_are_settings_and_a_zip_past_them_is_refused_whole():
    archive = _zip([("a.jpg", _jpeg(1)), ("b.jpg", _jpeg(2))])
    total = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(archive)).infolist())
    limits = IngestLimits.from_settings(Settings(max_archive_bytes=total - 1))
    assert list(iter_upload("two.zip", archive, limits=limits)) == [Rejected(
        "two.zip", f"zip expands to {total} bytes, more than the limit of {total - 1}; nothing was extracted")]
    # A ratio limit: zeros compress ~1000x, refused past the floor however small the zip.
    zeros = _zip([("zeros.mkv", b"\x1a\x45\xdf\xa3" + bytes(16 << 20)), ("a.jpg", _jpeg())])
    results = list(iter_upload("z.zip", zeros, limits=IngestLimits(max_zip_ratio=500)))
    assert isinstance(results[0], Frame) and results[1].reason.startswith("zip bomb refused")


def test_a_stream_past_the_upload_limit_is_refused_while_spooling():
    class NonSeekable(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self.inner.read(size)

    archive = _zip([("a.jpg", _jpeg())])
    limits = IngestLimits(max_file_bytes=len(archive) - 1)
    assert list(iter_upload("big.zip", NonSeekable(archive), limits=limits)) == [
        Rejected("big.zip", f"file too large: more than {len(archive) - 1} bytes")]


def test_over_the_api_a_request_past_the_upload_limit_is_a_413(settings, valkey_server):
    from cluster.dashboard.app import create_app
    from cluster.store import Store

    settings = settings.with_(redis_url=f"{valkey_server.url}/10", max_upload_bytes=4096)
    _, token = Store.from_settings(settings).users.add(f"limit{np.random.default_rng().integers(1e9)}")
    api = FlaskApi(create_app(settings), token)
    dataset = api.post("/api/datasets", json={"name": "limited"})
    report = api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", ("a.jpg", _jpeg(size=(16, 16))))])
    assert len(report["added"]) == 1
    with pytest.raises(ApiError) as err:
        api.post(f"/api/datasets/{dataset['id']}/files", files=[("file", ("b.jpg", _jpeg(size=(200, 200))))])
    assert err.value.status == 413


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("raw, safe", [
    (EVIL, "tmp/evil_upload.jpg"),
    ("/etc/passwd.jpg", "etc/passwd.jpg"),
    ("C:\\Users\\me\\..\\a.jpg", "Users/a.jpg"),
    ("a\x00b\nc\u202e.jpg", "abc.jpg"),
    ("..", "upload"),
    ("dir/ok name.jpg", "dir/ok name.jpg"),
])
def test_upload_names_are_normalised_before_they_are_stored(raw, safe):
    assert safe_name(raw) == safe and safe_name(safe) == safe
    (frame,) = iter_upload(raw, _jpeg())
    assert isinstance(frame, Frame) and frame.name == safe


def test_zip_member_names_are_normalised_and_unique_after_normalising():
    archive = _zip([("x/../b.jpg", _jpeg(1)), ("b.jpg", _jpeg(2)), ("c\x07\\d.jpg", _jpeg(3))])
    results = list(iter_upload(EVIL.replace(".jpg", ".zip"), archive))
    assert [(r.name, isinstance(r, Frame)) for r in results] == [
        ("tmp/evil_upload.zip/b.jpg", True), ("tmp/evil_upload.zip/b.jpg", False),
        ("tmp/evil_upload.zip/c/d.jpg", True)]
    assert results[1].reason == "duplicate member name in zip"


def test_exports_normalise_stored_names_a_second_time(tmp_path):
    frames = [{"frame": 0, "name": EVIL, "width": 8, "height": 8, "shapes": []},
              {"frame": 1, "name": "/abs/x\x01.jpg", "width": 8, "height": 8, "shapes": []},
              {"frame": 2, "name": "../..", "width": 8, "height": 8, "shapes": []}]
    failed = [{"frame": 3, "name": "..\\..\\win.jpg", "reason": "corrupt"}]
    xml = io.BytesIO()
    write_cvat(iter(frames), {"1": "a"}, xml, failed=failed, job_meta={"id": "j", "name": "j"})
    coco = io.StringIO()
    write_coco(iter(frames), {"1": "a"}, coco, failed=failed)
    doc = json.loads(coco.getvalue())
    assert [i["file_name"] for i in doc["images"]] == ["tmp/evil_upload.jpg", "abs/x.jpg", "frame_000002"]
    assert doc["failed_frames"][0]["name"] == "win.jpg"
    text = xml.getvalue().decode()
    assert 'name="tmp/evil_upload.jpg"' in text and 'name="abs/x.jpg"' in text and ".." not in text


# ---------------------------------------------------------------------------------------------
# Videos


def test_a_truncated_mkv_warns_with_the_number_of_frames_kept():
    mkv = _mkv(60)
    whole = list(iter_upload("clip.mkv", mkv))
    assert len(whole) == 60 and all(isinstance(r, Frame) for r in whole)
    results = list(iter_upload("cut.mkv", mkv[: len(mkv) // 2]))
    frames = [r for r in results if isinstance(r, Frame)]
    assert 0 < len(frames) < 60
    warning = results[-1]
    assert isinstance(warning, Truncated) and warning.name == "cut.mkv" and warning.kept == len(frames)
    assert warning.reason == (f"truncated video: kept {len(frames)} frame(s); its declared duration holds "
                              f"about 60, so about {60 - len(frames)} are missing")


def test_video_frames_past_the_pixel_limit_are_refused_before_decoding():
    (result,) = iter_upload("clip.mkv", _mkv(3), limits=IngestLimits(max_image_pixels=64 * 48 - 1))
    assert result == Rejected("clip.mkv", f"video frames too large: 64x48 pixels (limit {64 * 48 - 1}); not decoded")


# ---------------------------------------------------------------------------------------------
# Devices


@pytest.mark.parametrize("device", ["FOO", "X" * 5000, "G P U", "CPU;rm -rf", "GPU.12345", "", "HETERO:GPU,CPU"])
def test_unknown_or_malformed_device_names_are_refused(device):
    with pytest.raises(InvalidInput) as err:
        normalize_device(device)
    assert "bad device name" in err.value.message and len(err.value.message) < 200


@pytest.mark.parametrize("device, name", [("cpu", "CPU"), (" GPU.1 ", "GPU.1"), ("npu", "NPU"), ("AUTO", "AUTO")])
def test_openvino_device_names_are_accepted(device, name):
    assert normalize_device(device) == name


@pytest.mark.integration  # runs `prelabel up` and `prelabel worker`
def test_prelabel_up_and_worker_refuse_a_bad_device_before_starting_anything(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRELABEL_", "REDIS_", "S3_"))}
    env["PRELABEL_HOME"] = str(tmp_path)
    for args in (["up", "--devices", "CPU,FOO"], ["worker", "--device", "X" * 5000]):
        out = subprocess.run([sys.executable, "-m", "cluster", *args], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2 and "bad device name" in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr) < 300
    assert not (tmp_path / "cluster.json").exists()


# ---------------------------------------------------------------------------------------------
# Label id 0


def test_label_id_0_is_accepted_as_in_cvats_yolo_label_map():
    assert parse_label_map(b'{"label_map": {"0": "person", "1": "bicycle"}}') == {"0": "person", "1": "bicycle"}
    for bad, text in [(b'{"-1": "x"}', "between 0 and 255"), (b'{"256": "x"}', "between 0 and 255"),
                      (b'{"0": "a", "255": "b"}', "background"), (b'{"1": "a", "01": "b"}', "twice")]:
        with pytest.raises(InvalidInput, match=text):
            parse_label_map(bad)


def test_masks_never_confuse_label_0_with_the_background(tmp_path):
    frames = [{"frame": 0, "name": "a.jpg", "width": 10, "height": 6,
               "shapes": [{"type": "rectangle", "label": "0", "points": [2, 1, 6, 4]},
                          {"type": "rectangle", "label": "1", "points": [7, 1, 9, 4]}]}]
    write_masks(iter(frames), {"0": "person", "1": "bicycle"}, tmp_path / "with0")
    assert (tmp_path / "with0/labels.txt").read_text() == "255\tbackground\n0\tperson\n1\tbicycle\n"
    mask = np.asarray(Image.open(tmp_path / "with0/a.png"))
    assert set(np.unique(mask)) == {0, 1, 255}
    assert (mask[1:4, 2:6] == 0).all() and (mask[1:4, 7:9] == 1).all() and (mask == 0).sum() == 12
    # Without a label 0, the background stays 0 as before.
    frames[0]["shapes"] = frames[0]["shapes"][1:]
    write_masks(iter(frames), {"1": "bicycle"}, tmp_path / "without0")
    assert (tmp_path / "without0/labels.txt").read_text() == "0\tbackground\n1\tbicycle\n"
    assert set(np.unique(np.asarray(Image.open(tmp_path / "without0/a.png")))) == {0, 1}


# ---------------------------------------------------------------------------------------------
# Over the API, against the session cluster

LABEL0_SCRIPT = '''
def interpret(outputs, frame, labels, context):
    return [{"type": "rectangle", "label": 0, "points": [2, 2, 10, 8], "score": 0.9}]
'''


@pytest.fixture(scope="module")
def label0(cluster, tmp_path_factory):
    _, client = new_user(cluster)
    xml, bin_ = tiny_model(tmp_path_factory.mktemp("label0"))
    model = register(client, "yolo-like", xml, bin_, LABEL0_SCRIPT, {"0": "person", "1": "bicycle"})
    return client, model


def test_over_the_api_bad_files_are_refused_with_reasons_and_the_rest_added(label0, huge_png, zip_bomb):
    client, _ = label0
    dataset = client.post("/api/datasets", json={"name": "bad-input"})
    mkv = _mkv(60)
    files = [("file", ("huge.png", huge_png)), ("file", (EVIL, _jpeg(5))), ("file", ("cut.mkv", mkv[: len(mkv) // 2])),
             ("file", ("bomb.zip", zip_bomb)), ("file", ("good.jpg", _jpeg(6)))]
    report = client.post(f"/api/datasets/{dataset['id']}/files", files=files)
    reasons = {r["name"]: r["reason"] for r in report["rejected"]}
    assert reasons["huge.png"] == "image too large: 13000x13000 pixels (limit 40000000)"
    assert reasons["bomb.zip/clip.mp4"].startswith("zip bomb refused")
    assert reasons["cut.mkv"].startswith("truncated video: kept ")
    kept = int(reasons["cut.mkv"].split("kept ")[1].split(" ")[0])
    added = [a["name"] for a in report["added"]]
    assert added[0] == "tmp/evil_upload.jpg" and added[-2:] == ["bomb.zip/ok.jpg", "good.jpg"]
    assert len(added) == 3 + kept == report["frame_count"]
    stored = [f["name"] for f in client.get(f"/api/datasets/{dataset['id']}/frames", params={"limit": 1000})]
    assert stored == added and not any(".." in n or n.startswith("/") for n in stored)


def test_over_the_api_a_bad_device_is_a_400_and_an_unserved_one_says_so_at_submit(label0):
    client, model = label0
    dataset = client.post("/api/datasets", json={"name": "devices"})
    client.upload(dataset["id"], "a.jpg", io.BytesIO(_jpeg()))
    before = len(client.get("/api/jobs"))
    for device in ["FOO", "X" * 5000]:
        with pytest.raises(ApiError) as err:
            client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": device})
        assert err.value.status == 400 and "bad device name" in err.value.message and len(err.value.message) < 200
    assert len(client.get("/api/jobs")) == before
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "device": "npu"})
    assert job["device"] == "NPU" and "no worker serves device NPU" in job["warning"]
    client.post(f"/api/jobs/{job['id']}/cancel")


def test_over_the_api_a_label_0_model_runs_and_its_exports_keep_label_0_and_safe_names(label0):
    client, model = label0
    assert model["labels"] == {"0": "person", "1": "bicycle"}
    dataset = client.post("/api/datasets", json={"name": "label0"})
    client.upload(dataset["id"], EVIL, io.BytesIO(_jpeg(7, size=(16, 12))))
    job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
    assert wait_job(client, job["id"])["state"] == "completed"
    masks = client.request("GET", f"/api/jobs/{job['id']}/export", params={"format": "masks"}).content
    with zipfile.ZipFile(io.BytesIO(masks)) as zf:
        assert zf.read("labels.txt").decode() == "255\tbackground\n0\tperson\n1\tbicycle\n"
        (png,) = [n for n in zf.namelist() if n.endswith(".png")]
        mask = np.asarray(Image.open(io.BytesIO(zf.read(png))))
    assert (mask[2:8, 2:10] == 0).all() and (mask == 0).sum() == 48 and (mask == 255).sum() == 16 * 12 - 48
    coco = client.get(f"/api/jobs/{job['id']}/export", params={"format": "coco"})
    assert coco["images"][0]["file_name"] == "tmp/evil_upload.jpg"
    assert [a["category_id"] for a in coco["annotations"]] == [0]
    cvat = client.request("GET", f"/api/jobs/{job['id']}/export", params={"format": "cvat"}).text
    assert 'name="tmp/evil_upload.jpg"' in cvat and 'label="person"' in cvat


def test_over_the_api_a_worker_fails_a_stored_13000x13000_frame_with_its_reason_and_stays_small(
        cluster, label0, huge_png):
    """A frame stored before the limit (or under a larger one) reaches a worker: it fails with its
    reason, from the header, and the worker's memory does not move (it grew 1.5 GB per such frame)."""
    import hashlib
    import time

    from cluster.objectstore import Keys, open_object_store
    from cluster.store import Store

    client, model = label0
    dataset = client.post("/api/datasets", json={"name": "stored-huge"})
    client.upload(dataset["id"], "before.jpg", io.BytesIO(_jpeg(8)))
    digest = hashlib.sha256(huge_png).hexdigest()
    key = Keys.frame(dataset["id"], digest, "png")
    open_object_store(cluster).put_bytes(key, huge_png, "image/png")
    store = Store.from_settings(cluster)
    store.datasets.add_frame(dataset["id"], name="huge.png", digest=digest, key=key, width=13000, height=13000)
    client.upload(dataset["id"], "after.jpg", io.BytesIO(_jpeg(9)))
    warm = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"], "frames": "0"})
    assert wait_job(client, warm["id"])["state"] == "completed"  # the model is loaded before measuring

    workers = [psutil.Process(w["pid"]) for w in store.workers.all() if psutil.pid_exists(w["pid"])]
    assert workers
    before = {p.pid: p.memory_info().rss for p in workers}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for p in workers:
                try:
                    peak[p.pid] = max(peak[p.pid], p.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        job = client.post("/api/jobs", json={"dataset": dataset["id"], "model": model["id"]})
        final = wait_job(client, job["id"])
    finally:
        done.set()
        sampler.join()
    assert final["frames_done"] == 2 and final["frames_failed"] == 1
    (failed,) = client.get(f"/api/jobs/{job['id']}/failed")
    assert failed["frame"] == 1 and "frame too large: 13000x13000 pixels (limit 40000000" in failed["reason"]
    grown = max(peak[pid] - before[pid] for pid in before)
    print(f"\nworker RSS before {max(before.values()) >> 20} MB, peak growth {grown >> 20} MB")
    assert grown < 300 << 20
