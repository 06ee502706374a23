"""The `prelabel` command. Admin commands (users) talk to Redis; the rest are API clients."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from cluster.cli.checks import floats, open_input, port, positive_int, threshold
from cluster.cli.delete import add_delete_parser, cmd_datasets_delete, cmd_models_delete
from cluster.cli.output import add_json_flag, fields, job_detail, job_state, print_json, print_table, when
from cluster.config import DEFAULT_DEVICE, Settings
from cluster.errors import PrelabelError
from cluster.jobs.thresholds import DEFAULT_THRESHOLD


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.from_env(**extra)


def cmd_up(args: argparse.Namespace) -> int:
    from cluster.broker.queues import normalize_device
    from cluster.local.up import run_up

    settings = Settings.from_env(data_dir=args.data_dir, devices=args.devices, port=args.port)
    # An unknown device (FOO) is an error here, not a worker restarted for ever.
    settings = settings.with_(devices=tuple(normalize_device(d) for d in settings.devices))
    return run_up(settings)


def cmd_down(args: argparse.Namespace) -> int:
    from cluster.local.up import stop_running

    return stop_running()


def cmd_worker(args: argparse.Namespace) -> int:
    from cluster.workers.main import run_worker

    return run_worker(Settings.from_env(), args.device)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from cluster.dashboard.serve import exec_gunicorn

    settings = Settings.from_env(port=args.port)
    if not settings.redis_url:
        raise PrelabelError("the dashboard needs REDIS_URL (and S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY)")
    return exec_gunicorn(settings, host=args.host, workers=args.workers, threads=args.threads)


def cmd_admin_bootstrap(args: argparse.Namespace) -> int:
    """Create the first admin from a token an operator keeps (a Kubernetes Secret), once."""
    from cluster.services.users import bootstrap_admin
    from cluster.store import Store

    settings = Settings.from_env()
    name = args.name or settings.admin_name
    if not settings.admin_token:
        raise PrelabelError("set PRELABEL_ADMIN_TOKEN to the first admin's API token (e.g. from a Secret)")
    store = Store.from_settings(settings)
    created = bootstrap_admin(store, name, settings.admin_token)
    print(f"admin {name!r} {'created' if created else 'already exists with this token; nothing to do'}")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from cluster.client import save_token
    from cluster.services.users import add_user
    from cluster.store import Store

    user, token = add_user(Store.from_settings(Settings.from_env()), args.name, admin=args.admin)
    if args.save:
        save_token(token)
    print(token)
    print(f"created {'admin ' if user.admin else ''}user {user.name}; keep the token above, it is shown once",
          file=sys.stderr)
    return 0


def cmd_users_token(args: argparse.Namespace) -> int:
    """Tokens are stored hashed, so one is never shown again: --reset issues a new one (printed once);
    the old one and every dashboard session of the user stop working at once."""
    from cluster.services.users import reset_token
    from cluster.store import Store

    if not args.reset:
        raise PrelabelError("API tokens are stored hashed and cannot be shown again; "
                            f"`prelabel users token {args.name} --reset` issues a new one and revokes the old")
    token = reset_token(Store.from_settings(Settings.from_env()), args.name, by=None)
    print(token)
    print(f"new token for {args.name}; the old one and the user's dashboard sessions no longer work", file=sys.stderr)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    users = _client().get("/api/users")
    if args.json:
        print_json(users)
    else:
        print_table(users, [("name", lambda u: u["name"]), ("admin", lambda u: u.get("admin")),
                            ("disabled", lambda u: bool(u.get("disabled"))), ("jobs", lambda u: u.get("jobs")),
                            ("created", lambda u: when(u.get("created_at")))],
                    "no users yet (prelabel users add NAME)")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """The cluster page in a terminal: live workers (with their metrics URLs) and what each does,
    queues, devices nobody serves, Redis and S3, recent errors."""
    state = _client().get("/api/cluster")
    if args.json:
        print_json(state)
        return 0
    workers = state.get("workers") or []
    print_table(workers, [
        ("worker", lambda w: w["id"]), ("device", lambda w: w.get("device")), ("host", lambda w: w.get("host")),
        ("pid", lambda w: w.get("pid")), ("heartbeat", lambda w: f"{w.get('heartbeat_age_s', 0):.0f}s ago"),
        ("metrics", lambda w: w.get("metrics")),
    ], "no live workers: jobs wait until one starts (prelabel worker --device CPU)")
    if workers:
        print()
        print_table(workers, [
            ("worker", lambda w: w["id"]), ("doing", _doing), ("frames/s", lambda w: w.get("fps")),
            ("frames done", lambda w: w.get("frames_done")),
            ("cpu", lambda w: None if w.get("cpu_percent") is None else f"{w['cpu_percent']:.0f}%"),
            ("memory", lambda w: _size(w.get("rss_bytes"))), ("models loaded", _models),
        ], "")
    print()
    print_table(state.get("queues") or [], [
        ("queue", lambda q: q["queue"]), ("workers", lambda q: q.get("workers", 0)),
        ("waiting", lambda q: q.get("waiting", 0)), ("in flight", lambda q: q.get("unacked", 0)),
        ("delayed", lambda q: q.get("delayed", 0)), ("parked", lambda q: q.get("parked", 0)),
        ("dead", lambda q: q.get("dead", 0)),
    ], "no queues")
    for unserved in state.get("unserved") or []:
        print(f"{unserved['device']}: {unserved['why']}")
    print()
    for name, check in (state.get("health") or {}).items():
        print(f"{name}: " + (f"ok ({check.get('latency_ms')} ms)" if check.get("ok") else
                             f"DOWN: {check.get('error')}"))
    print()
    errors = (state.get("errors") or [])[:CLUSTER_ERRORS_SHOWN]
    print_table(errors, [
        ("when", lambda e: when(e.get("at"))), ("job", lambda e: e.get("job")),
        ("what", lambda e: e.get("kind", "").replace("_", " ") +
         (f" (chunk {e['chunk']})" if e.get("chunk") is not None else "")),
        ("reason", lambda e: e.get("reason")),
    ], "no recent errors")
    return 0


#: Recent errors `prelabel cluster` prints (--json has all the API answered).
CLUSTER_ERRORS_SHOWN = 10


def _doing(worker: dict[str, Any]) -> str:
    """'idle', or the chunks a worker runs: 'job J chunk C', another user's as such."""
    running = worker.get("running")
    if running is None:
        return "-"  # a worker of an older version publishes no activity
    parts = [f"job {r['job']} chunk {r['chunk']}" if r.get("job") else "another user's chunk" for r in running]
    return ", ".join(parts) or "idle"


def _models(worker: dict[str, Any]) -> str:
    names = [str(m.get("name") or m.get("id")) for m in worker.get("models") or []]
    if worker.get("models_hidden"):
        names.append(f"{worker['models_hidden']} of other users")
    return ", ".join(names) or ("none" if "models" in worker else "-")


def _size(n: Any) -> str | None:
    if n is None:
        return None
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None


def cmd_login(args: argparse.Namespace) -> int:
    from cluster.client import ApiClient, save_token

    if not args.token.strip():
        raise PrelabelError("the token is empty: pass the token `prelabel users add NAME` printed")
    me = ApiClient(Settings.from_env(), token=args.token.strip()).get("/api/me")
    path = save_token(args.token.strip())
    if args.json:
        print_json(me)
    else:
        print(f"logged in as {me['name']}{' (admin)' if me.get('admin') else ''}; token saved in {path}")
    return 0


def _client():
    from cluster.client import ApiClient

    return ApiClient(Settings.from_env())


def cmd_datasets_add(args: argparse.Namespace) -> int:
    from cluster.client import ApiError
    from cluster.datasets.ingest import iter_paths

    files = list(iter_paths([Path(p) for p in args.paths]))  # every path checked before anything is sent
    if not files:
        raise PrelabelError(f"no files to upload in {' '.join(args.paths)} (hidden files are skipped)")
    for _, path in files:
        open_input("datasets add", str(path)).close()
    client = _client()
    try:
        dataset, created = client.get(f"/api/datasets/{args.name}"), False
    except ApiError as exc:
        if exc.status != 404:
            raise
        dataset, created = client.post("/api/datasets", json={"name": args.name}), True
    added = duplicate = rejected = 0
    try:
        for name, path in files:
            with open_input("datasets add", str(path)) as f:
                report = client.upload(dataset["id"], name, f)
            # Older servers list duplicates under "added" with "new": false.
            listed = report["added"] + report.get("duplicate", [])
            new = sum(1 for r in listed if r.get("new", True))
            added += new
            duplicate += len(listed) - new
            for r in report["rejected"]:
                rejected += 1
                print(f"rejected {r['name']}: {r['reason']}", file=sys.stderr)
            print(f"{name}: {new} frame(s) added, {len(listed) - new} duplicate(s), "
                  f"{len(report['rejected'])} rejected", file=sys.stderr)
    except (PrelabelError, OSError) as exc:
        # All or nothing: the dataset this call created goes; one that existed keeps what it had.
        message = getattr(exc, "message", None) or str(exc)
        if created:
            try:
                client.delete(f"/api/datasets/{dataset['id']}")
                message += f"; dataset {args.name!r} (created by this command) was removed"
            except PrelabelError as undo:
                message += f"; dataset {args.name!r} could not be removed: {undo.message}"
        elif added:
            message += f"; {added} frame(s) were added to {args.name!r} before this failure"
        raise PrelabelError(message) from None
    dataset = client.get(f"/api/datasets/{dataset['id']}")
    if args.json:
        print_json({"dataset": dataset["id"], "name": dataset["name"], "added": added, "duplicate": duplicate,
                    "rejected": rejected, "frame_count": dataset["frame_count"]})
    else:
        print(f"dataset {dataset['name']} ({dataset['id']}): {added} frame(s) added, {duplicate} duplicate(s), "
              f"{rejected} file(s) rejected; {dataset['frame_count']} frame(s) in all")
    return 0 if added or duplicate or not rejected else 1


DATASET_COLUMNS = [
    ("id", lambda d: d["id"]),
    ("name", lambda d: d["name"]),
    ("frames", lambda d: d.get("frame_count", 0)),
    ("owner", lambda d: d.get("owner")),
    ("created", lambda d: when(d.get("created_at"))),
]


def cmd_datasets_list(args: argparse.Namespace) -> int:
    datasets = _client().get("/api/datasets")
    if args.json:
        print_json(datasets)
    else:
        print_table(datasets, DATASET_COLUMNS, "no datasets yet (prelabel datasets add NAME FILES...)")
    return 0


def _preprocessing_from_args(args: argparse.Namespace) -> dict[str, Any]:
    prep: dict[str, Any] = {}
    if args.input_size:
        try:
            w, h = (int(v) for v in args.input_size.lower().split("x"))
        except ValueError:
            raise PrelabelError(f"--input-size takes WIDTHxHEIGHT, got {args.input_size!r}") from None
        if not (1 <= w <= 65536 and 1 <= h <= 65536):
            raise PrelabelError(f"--input-size: width and height must be between 1 and 65536, got {args.input_size!r}")
        prep.update(width=w, height=h)
    if args.layout:
        prep["layout"] = args.layout.upper()
    if args.color:
        prep["color"] = args.color.upper()
    if args.mean:
        prep["mean"] = floats("--mean", args.mean)
    if args.scale:
        prep["scale"] = floats("--scale", args.scale)
    if args.resize:
        prep["resize"] = args.resize
    return prep


def cmd_models_add(args: argparse.Namespace) -> int:
    prep = _preprocessing_from_args(args)
    named = [("model", args.model), ("labels", args.labels), ("script", args.script)]
    if args.weights:
        named.append(("weights", args.weights))
    client = _client()
    files: list[tuple[str, tuple[str, Any]]] = []
    try:
        for field, path in named:  # each file checked (exists, not a folder, readable) before anything is sent
            files.append((field, (Path(path).name, open_input(f"--{field}", path))))
        record = client.post("/api/models", files=files, data={
            "name": args.name, "preprocessing": json.dumps(prep),
            "trusted": "true" if args.trusted else "false",
            **({"threshold": str(args.threshold)} if args.threshold is not None else {})})
    finally:
        for _, (_, f) in files:
            f.close()
    _print_model(args, record)
    return 0


def _labels(model: dict[str, Any], limit: int = 60) -> str:
    names = ", ".join(str(v) for v in (model.get("labels") or {}).values())
    return names if len(names) <= limit else names[: limit - 3] + "..."


def _print_model(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """A model just registered: the API's record with --json, else what it is and what it outputs."""
    if args.json:
        print_json(record)
        return
    outputs = ", ".join(f"{k} {v}" for k, v in (record.get("outputs") or {}).items())
    print(f"registered model {record['name']} ({record['id']})")
    print(fields([("labels", _labels(record, 200)), ("outputs", outputs or None),
                  ("threshold", record.get("threshold")), ("trusted", record.get("trusted"))]))


MODEL_COLUMNS = [
    ("id", lambda m: m["id"]),
    ("name", lambda m: m["name"]),
    ("format", lambda m: m.get("source_format")),
    ("threshold", lambda m: m.get("threshold")),
    ("labels", _labels),
    ("owner", lambda m: m.get("owner")),
    ("created", lambda m: when(m.get("created_at"))),
]


def cmd_models_list(args: argparse.Namespace) -> int:
    models = _client().get("/api/models")
    if args.json:
        print_json(models)
    else:
        print_table(models, MODEL_COLUMNS, "no models yet (prelabel zoo add NAME, or prelabel models add NAME "
                                           "--model ... --labels ... --script ...)")
    return 0


def cmd_models_trust(args: argparse.Namespace) -> int:
    client = _client()
    response = client.request("PATCH", f"/api/models/{quote(args.name, safe='')}",
                              json={"trusted": not args.untrusted})
    record = response.json()
    if args.json:
        print_json(record)
    else:
        how = "trusted: it runs as full Python" if record.get("trusted") else "untrusted: it runs in the OS sandbox"
        print(f"model {record['name']} ({record['id']}): script {how}")
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from cluster.zoo.install import zoo_entries

    entries = zoo_entries()
    if args.json:
        print_json(entries)
    else:
        print_table(entries, [("name", lambda e: e["name"]), ("description", lambda e: e["description"])],
                    "the zoo is empty")
    return 0


def cmd_zoo_add(args: argparse.Namespace) -> int:
    from cluster.zoo.install import add_zoo_model

    record = add_zoo_model(_client(), Settings.from_env(), args.name, model_name=args.as_name)
    _print_model(args, record)
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    client = _client()
    body = {"dataset": args.dataset, "model": args.model, "device": args.device, "frames": args.frames,
            "threshold": args.threshold, "chunk_size": args.chunk_size}
    job = client.post("/api/jobs", json=body)
    if not args.json:
        # The id alone on the first line, for `JOB=$(prelabel annotate ... | head -1)`.
        print(job["id"])
        print(f"started job {job['id']}: {job['frames_total']} frame(s) of {job.get('dataset_name')} in "
              f"{job['chunk_count']} chunk(s), model {job.get('model_name')}, device {job['device']}")
    if job.get("warning"):
        print(f"warning: {job['warning']}", file=sys.stderr)
    if not args.wait:
        if args.json:
            print_json(job)
        return 0
    from cluster.cli.progress import wait_for
    from cluster.jobs.states import JobState

    final = wait_for(lambda: client.get(f"/api/jobs/{job['id']}"))
    if args.json:
        print_json(final)
    else:
        print(f"job {final['id']} {job_state(final)}: {final['frames_done']} frame(s) annotated, "
              f"{final['frames_failed']} failed")
    return 0 if final["state"] == JobState.COMPLETED.value else 1


def cmd_status(args: argparse.Namespace) -> int:
    client = _client()
    if args.wait:
        from cluster.cli.progress import wait_for

        status = wait_for(lambda: client.get(f"/api/jobs/{args.job}"))
    else:
        status = client.get(f"/api/jobs/{args.job}")
    if args.json:
        print_json(status)
    else:
        print(job_detail(status))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cluster.cli.export import export_job

    path = export_job(_client(), args.job, args.format, Path(args.output), force=args.force, partial=args.partial)
    print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cluster.cli.evaluate import cmd_evaluate as evaluate

    return evaluate(_client(), args)


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.cli.export import export_job
    from cluster.cli.progress import wait_for
    from cluster.demo.run import default_out_dir, run_demo

    out = Path(args.out).expanduser() if args.out else default_out_dir()
    return run_demo(data_dir=args.data_dir, out_dir=out, port=args.port, wait=wait_for, export=export_job)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, ``prelabel: error: ...`` (exit 2), as every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"prelabel: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    """The installed distribution's version (what pip installed), not a constant kept by hand."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prelabel")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e . makes it known)"


#: cluster.services.exports.EXPORTS' names, written out so that the CLI starts without importing the
#: writers (tests/test_export_datumaro.py checks that the two agree).
EXPORT_FORMATS = ("cvat", "coco", "masks", "yolo", "yolo-seg", "datumaro", "voc")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prelabel", description="Auto-annotate image datasets with OpenVINO models.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, and a traceback for unexpected errors")
    p.add_argument("--version", action="version", version=f"prelabel {_version()}",
                   help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("up", help="start a local cluster: Valkey, SeaweedFS S3, workers, dashboard")
    s.add_argument("--data-dir", help="where the cluster keeps its data and logs (PRELABEL_DATA_DIR, "
                                      "default ~/.prelabel/data)")
    s.add_argument("--devices", default=None,
                   help=f"comma-separated OpenVINO devices, one worker each ({DEFAULT_DEVICE})")
    s.add_argument("--port", type=port, default=None, help="the dashboard's port (default: a free one)")
    s.set_defaults(func=cmd_up)

    s = sub.add_parser("down", help="stop the local cluster started by `prelabel up`")
    s.set_defaults(func=cmd_down)

    s = sub.add_parser("worker", help="run a worker for one device")
    s.add_argument("--device", default=DEFAULT_DEVICE, help=f"the OpenVINO device it serves (default {DEFAULT_DEVICE})")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("dashboard", help="serve the dashboard and API under gunicorn (the container role)")
    s.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    s.add_argument("--port", type=port, default=None, help="app port (PRELABEL_PORT, default 8080); /metrics is "
                   "served on PRELABEL_DASHBOARD_METRICS_PORT alone when that is set")
    s.add_argument("--workers", type=positive_int, default=2, help="gunicorn worker processes")
    s.add_argument("--threads", type=positive_int, default=4, help="threads per worker process")
    s.set_defaults(func=cmd_dashboard)

    admin = sub.add_parser("admin", help="cluster administration").add_subparsers(dest="admin_command", required=True)
    s = admin.add_parser("bootstrap", help="create the first admin with the token in PRELABEL_ADMIN_TOKEN "
                         "(idempotent; run by the Kubernetes bootstrap Job)")
    s.add_argument("--name", default=None, help="the admin's user name (PRELABEL_ADMIN_NAME, default admin)")
    s.set_defaults(func=cmd_admin_bootstrap)

    users = sub.add_parser("users", help="accounts: add and token talk to Redis (run them where REDIS_URL "
                           "reaches); list, disable, enable and admin ask the API (admins)"
                           ).add_subparsers(dest="users_command", required=True)
    s = users.add_parser("list", help="every account: name, admin, created (admins only, through the API)")
    add_json_flag(s)
    s.set_defaults(func=cmd_users_list)
    s = users.add_parser("add", help="create an account and print its API token")
    s.add_argument("name", help="the user name")
    s.add_argument("--admin", action="store_true", help="an admin: sees every user's data, may trust scripts")
    s.add_argument("--save", action="store_true", help="also save the token for this machine's CLI")
    s.set_defaults(func=cmd_users_add)
    s = users.add_parser("token", help="reissue a user's API token (--reset): the old one stops working")
    s.add_argument("name", help="the user name")
    s.add_argument("--reset", action="store_true", help="issue a new token and revoke the old one")
    s.set_defaults(func=cmd_users_token)

    s = sub.add_parser("cluster", help="live workers (device, heartbeat, metrics URL, what each runs, frames, CPU, "
                                       "memory, models), queues, unserved devices, Redis and S3, recent errors")
    add_json_flag(s)
    s.set_defaults(func=cmd_cluster)

    s = sub.add_parser("login", help="save an API token for the CLI")
    s.add_argument("token", help="the token `prelabel users add NAME` printed")
    add_json_flag(s)
    s.set_defaults(func=cmd_login)

    ds = sub.add_parser("datasets", help="upload, list and delete datasets").add_subparsers(dest="ds_command",
                                                                                           required=True)
    s = ds.add_parser("add", help="upload images, folders, zip archives and videos into a dataset")
    s.add_argument("name", help="the dataset's name (created if you have none by that name)")
    s.add_argument("paths", nargs="+", help="image files, folders, .zip archives and videos")
    add_json_flag(s, "print the outcome as one JSON object (dataset, name, added, duplicate, rejected, "
                     "frame_count) for scripts")
    s.set_defaults(func=cmd_datasets_add)
    s = ds.add_parser("list", help="your datasets (every one for an admin)")
    add_json_flag(s)
    s.set_defaults(func=cmd_datasets_list)
    add_delete_parser(ds, "dataset", cmd_datasets_delete, "delete a dataset no job uses, with its images")

    ms = sub.add_parser("models", help="register, list and delete models").add_subparsers(dest="models_command",
                                                                                 required=True)
    s = ms.add_parser("add", help="register a model (IR, ONNX or TFLite) with labels and a script")
    s.add_argument("name", help="the model's name")
    s.add_argument("--model", required=True, help="the model file: OpenVINO IR .xml, .onnx or .tflite")
    s.add_argument("--weights", help="the IR's .bin (for an .xml model)")
    s.add_argument("--labels", required=True, help='label map: CVAT\'s {"label_map": {"1": "person"}}, the bare '
                   'mapping, a CVAT serverless function.yaml or its spec list [{"id": 1, "name": "person"}]')
    s.add_argument("--script", required=True, help="the interpretation script (.py), see docs/scripts.md")
    s.add_argument("--input-size", help="WIDTHxHEIGHT the network takes (default: from the model)")
    s.add_argument("--layout", choices=["NCHW", "NHWC", "nchw", "nhwc"], help="the input's layout "
                   "(default: from the model)")
    s.add_argument("--color", choices=["RGB", "BGR", "rgb", "bgr"], help="the channel order the network expects")
    s.add_argument("--mean", help="comma-separated per-channel mean")
    s.add_argument("--scale", help="comma-separated per-channel scale (divisor)")
    s.add_argument("--resize", choices=["linear", "nearest", "cubic"], help="the resize interpolation")
    s.add_argument("--trusted", action="store_true", help="admins only: run the script as full Python")
    s.add_argument("--threshold", type=threshold, default=None,
                   help=f"the score threshold jobs of this model use unless they set one (default {DEFAULT_THRESHOLD})")
    add_json_flag(s)
    s.set_defaults(func=cmd_models_add)
    s = ms.add_parser("list", help="your models (every one for an admin)")
    add_json_flag(s)
    s.set_defaults(func=cmd_models_list)
    add_delete_parser(ms, "model", cmd_models_delete, "delete a model no unfinished job uses, with its files")
    s = ms.add_parser("trust", help="admins: run a model's script as full Python (checked again first)")
    s.add_argument("name", help="the model's name or id")
    s.add_argument("--untrusted", action="store_true", help="the other way: run it in the OS sandbox again")
    add_json_flag(s)
    s.set_defaults(func=cmd_models_trust)

    zs = sub.add_parser("zoo", help="ready-made models").add_subparsers(dest="zoo_command", required=True)
    s = zs.add_parser("list", help="the models the zoo can fetch and register")
    add_json_flag(s, "print the zoo as JSON ([{name, description}]) for scripts")
    s.set_defaults(func=cmd_zoo_list)
    s = zs.add_parser("add", help="fetch, convert and register a zoo model")
    s.add_argument("name", help="the zoo model (see `prelabel zoo list`)")
    s.add_argument("--as", dest="as_name", help="register under this model name (default: the zoo name)")
    add_json_flag(s)
    s.set_defaults(func=cmd_zoo_add)

    s = sub.add_parser("annotate", help="start an annotation job")
    s.add_argument("--dataset", required=True, help="the dataset's name or id")
    s.add_argument("--model", required=True, help="the model's name or id")
    s.add_argument("--device", default=DEFAULT_DEVICE, help=f"the OpenVINO device to run on (default {DEFAULT_DEVICE})")
    s.add_argument("--frames", help="START-END[:STEP], END inclusive (default: all)")
    s.add_argument("--threshold", type=threshold, default=None, help="the model's own default when left out")
    s.add_argument("--chunk-size", type=positive_int, default=None,
                   help="frames per chunk (default: sized from the model's measured speed)")
    s.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
    add_json_flag(s)
    s.set_defaults(func=cmd_annotate)

    s = sub.add_parser("status", help="a job's state and progress")
    s.add_argument("job", help="the job's id")
    s.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
    add_json_flag(s)
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("export", help="write a job's annotations to a file")
    s.add_argument("job", help="the job's id")
    s.add_argument("--format", choices=EXPORT_FORMATS, required=True,
                   help="CVAT XML, COCO JSON, PNG masks (a folder, or a zip when -o ends in .zip), or a zip: "
                        "yolo (boxes), yolo-seg (polygons), datumaro (Datumaro JSON) or voc (Pascal VOC)")
    s.add_argument("-o", "--output", required=True, help="the file (or folder) to write")
    s.add_argument(
        "--force", action="store_true", help="overwrite an existing file (or unpack into a non-empty folder)"
    )
    s.add_argument("--partial", action="store_true", help="export a job that has not finished: what is done so far")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("evaluate", help="a job's quality report against a ground truth (mAP, precision, recall)")
    s.add_argument("job", help="the job's id")
    s.add_argument("--ground-truth", required=True, metavar="FILE",
                   help="COCO JSON or CVAT XML (CVAT for images) of some of the dataset's frames")
    add_json_flag(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("demo", help="the whole path on real data, from nothing to exports")
    s.add_argument("--data-dir", help="the data directory of the cluster it starts when none runs")
    s.add_argument("--out", default=None, help="where the exports go (default $XDG_DATA_HOME/prelabel/demo, "
                   "or ~/.local/share/prelabel/demo)")
    s.add_argument("--port", type=port, default=None, help="the dashboard's port if it starts a cluster")
    s.set_defaults(func=cmd_demo)

    from cluster.cli.jobs import add_jobs_parser
    from cluster.cli.script import add_script_parser

    add_script_parser(sub)
    add_jobs_parser(sub)
    from cluster.cli.users import add_allowlist_parser, add_user_admin_parsers

    add_user_admin_parsers(users)
    add_allowlist_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except PrelabelError as exc:
        print(f"prelabel: error: {_one_line(exc.message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or socket the command touched: say which and why, no traceback
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"prelabel: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not a user mistake: still one line; -v shows the traceback
        if args.verbose:
            logging.exception("unexpected error")
        print(f"prelabel: error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
              "(run with -v for details)", file=sys.stderr)
        return 1


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


if __name__ == "__main__":
    sys.exit(main())
