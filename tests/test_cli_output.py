"""The CLI's human output: aligned tables, job states that show failures, the demo's folder and its
reason when the cluster did not start. Pure functions: nothing runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cluster.cli.delete import confirm
from cluster.cli.output import JOB_COLUMNS, fields, job_detail, job_state, table, when
from cluster.demo.run import _why_not_up, default_out_dir

JOB = {"id": "0123456789ab", "state": "completed", "dataset": "d1", "dataset_name": "photos", "model": "m1",
       "model_name": "people", "device": "CPU", "frames_total": 57, "frames_done": 51, "frames_failed": 6,
       "chunk_count": 3, "created_at": 1_800_000_000.0, "queue": "prelabel-CPU", "owner": "alice",
       "chunks": {"pending": 0, "running": 1, "done": 2, "parked": 0}, "parked": [], "warning": None}


def test_a_table_aligns_columns_under_upper_case_headers_and_right_aligns_numbers():
    rows = [{"name": "a", "n": 5}, {"name": "longer name", "n": 1234}]
    text = table(rows, [("name", lambda r: r["name"]), ("frames", lambda r: r["n"])])
    assert text.splitlines() == ["NAME         FRAMES", "a                 5", "longer name    1234"]


def test_a_value_holding_newlines_stays_on_its_row():
    text = table([{"v": "two\nlines"}], [("v", lambda r: r["v"])])
    assert text.splitlines() == ["V", "two lines"]


def test_a_completed_job_with_failed_frames_says_so():
    assert job_state(JOB) == "completed, 6 failed"
    assert job_state(JOB | {"frames_failed": 0}) == "completed"
    row = table([JOB], JOB_COLUMNS).splitlines()[1]
    assert "completed, 6 failed" in row and "photos" in row and "people" in row and "57/57 (100%)" in row


def test_the_job_detail_shows_chunks_by_state_parked_chunks_and_the_warning():
    text = job_detail(JOB | {"parked": [{"chunk": 2, "reason": "its worker died 3 times", "at": 1_800_000_000.0}],
                             "warning": "no worker serves device CPU"})
    assert "chunks:" in text and "1 running, 2 done" in text
    assert f"parked chunk 2 since {when(1_800_000_000.0)}: its worker died 3 times" in text
    assert text.splitlines()[-1] == "warning: no worker serves device CPU"


def test_fields_align_names_and_leave_out_unknown_values():
    assert fields([("a", 1), ("long", None), ("bb", "x")]).splitlines() == ["a:  1", "bb: x"]


def test_the_demo_writes_to_the_users_data_folder_not_the_current_one(tmp_path):
    assert default_out_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "prelabel" / "demo"
    assert default_out_dir({}) == Path.home() / ".local" / "share" / "prelabel" / "demo"
    assert default_out_dir({"XDG_DATA_HOME": "relative"}) == Path.home() / ".local" / "share" / "prelabel" / "demo"


def test_the_demo_names_the_error_line_of_this_run_of_up(tmp_path):
    log = tmp_path / "up.log"
    log.write_text("prelabel: error: an old failure\n")
    offset = log.stat().st_size
    with open(log, "a") as f:
        f.write("starting\nprelabel: error: port 8080 on 127.0.0.1 is taken; choose another with --port\n")
    assert _why_not_up(log, offset) == "port 8080 on 127.0.0.1 is taken; choose another with --port"
    with open(log, "a") as f:
        f.write("Traceback\n  boom\n")
    assert _why_not_up(log, log.stat().st_size - len("Traceback\n  boom\n")) == "Traceback |   boom"


class _Tty:
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, agreed", [("y", True), ("YES\n", True), ("", False), ("n", False)])
def test_a_delete_asks_on_a_terminal(monkeypatch, answer, agreed):
    from cluster.errors import InvalidInput

    monkeypatch.setattr("sys.stdin", _Tty())
    asked = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer

    no = argparse.Namespace(yes=False)
    if agreed:
        confirm("job x", no, ask=ask)
    else:
        with pytest.raises(InvalidInput, match="job x was not deleted"):
            confirm("job x", no, ask=ask)
    assert asked == ["delete job x? This cannot be undone. [y/N] "]
    confirm("job x", argparse.Namespace(yes=True), ask=lambda _: pytest.fail("--yes must not ask"))
