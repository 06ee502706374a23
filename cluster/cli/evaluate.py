"""``prelabel evaluate JOB --ground-truth FILE``: the job's quality report (computed by the API), as
tables for people or the API's JSON with ``--json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cluster.cli.output import print_json, table
from cluster.client import ApiClient
from cluster.errors import PrelabelError


def _figure(value: Any) -> str | None:
    return None if value is None else f"{value:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """The report as text: what was compared, then per kind (box, mask) a table of labels and the
    overall mAP, then the frames where the model disagrees most."""
    truth = report["ground_truth"]
    lines = [f"job {report['job']}: {truth['matched']} of {truth['images']} ground-truth frames matched "
             f"({truth['format']}, {truth['shapes']} shapes); precision and recall at IoU "
             f"{report['iou_threshold']:g} for scores >= {report['threshold']:g}"]
    if truth.get("unmatched_names"):
        more = truth["unmatched"] - len(truth["unmatched_names"])
        lines.append("not in the job: " + ", ".join(truth["unmatched_names"]) + (f" and {more} more" if more else ""))
    for side, what in (("only_in_ground_truth", "ground truth"), ("only_in_model", "model")):
        extra = report["labels"].get(side) or []
        if extra:
            lines.append(f"labels only in the {what} (not counted): "
                         + ", ".join(f"{e['label']} ({e['shapes']} shapes)" for e in extra))
    for kind in ("box", "mask"):
        figures = report[kind]
        rows = [{**row, "ap": _figure(row["ap"]), "ap50": _figure(row["ap50"]),
                 "precision": _figure(row["precision"]), "recall": _figure(row["recall"])}
                for row in figures["labels"]]
        rows.append({"label": "all (mAP)", "ap": _figure(figures["map"]), "ap50": _figure(figures["ap50"])})
        lines += ["", f"{kind}:", table(rows, [
            ("label", lambda r: r["label"]), ("AP", lambda r: r["ap"]), ("AP50", lambda r: r["ap50"]),
            ("precision", lambda r: r.get("precision")), ("recall", lambda r: r.get("recall")),
            ("tp", lambda r: r.get("tp")), ("fp", lambda r: r.get("fp")), ("fn", lambda r: r.get("fn"))])]
    worst = report.get("worst_frames") or []
    lines += ["", "frames where the model disagrees most (boxes):"]
    if worst:
        lines.append(table(worst, [("frame", lambda r: r["frame"]), ("name", lambda r: r["name"]),
                                   ("F1", lambda r: f"{r['f1']:.2f}"), ("tp", lambda r: r["tp"]),
                                   ("fp", lambda r: r["fp"]), ("fn", lambda r: r["fn"])]))
    else:
        lines.append("none: every matched frame agrees at IoU 0.5")
    return "\n".join(lines)


def cmd_evaluate(client: ApiClient, args: argparse.Namespace) -> int:
    path = Path(args.ground_truth)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrelabelError(f"cannot read {path}: {exc.strerror or exc}") from None
    report = client.post(f"/api/jobs/{args.job}/evaluation", files=[("ground_truth", (path.name, data))])
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
