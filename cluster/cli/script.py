"""`prelabel script check|run`: try an interpretation script locally before registering a model.

``check FILE`` runs the static checks a worker runs before anything executes (syntax, style, the
imports and, for untrusted scripts, the allowlist) and prints each problem as ``FILE:LINE: message``.
``run FILE --outputs ARRAYS.npz --frame WxH`` runs the script once on the given model outputs in the
same isolated runtime the workers use (a separate process, the same checks, limits and validation)
and prints the shapes it would store, as JSON.

Wired into ``prelabel`` by ``add_script_parser(sub)`` in ``cluster/cli/main.py``; also runnable as
``python -m cluster.cli.script check|run ...``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from cluster.errors import PrelabelError, ScriptError
from cluster.jobs.thresholds import DEFAULT_THRESHOLD
from cluster.scripts.imports import DEFAULT_ALLOWED, DEFAULT_DENIED, STYLE_LEGACY, ScriptReport, check_script

DEFAULT_LABELS = {"1": "object"}
_LINE_SUFFIX = re.compile(r" \(line (\d+)(?:, (column \d+))?\)$")


class _Failed(Exception):
    """The command failed in a way already reported on stderr."""


def _read_source(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PrelabelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PrelabelError(f"{path} is not UTF-8 text: {exc}") from None


def _located(path: str, message: str, line: int) -> str:
    """``FILE:LINE: message`` with the message's own "(line N)" folded into the location."""
    m = _LINE_SUFFIX.search(message)
    if m:
        line = line or int(m.group(1))
        message = message[: m.start()] + (f" ({m.group(2)})" if m.group(2) else "")
    return f"{path}:{line}: {message}" if line else f"{path}: {message}"


def _allowed_untrusted() -> frozenset[str]:
    """The workers' allowlist: the default one plus PRELABEL_SCRIPT_MODULES, as ScriptPool.from_settings."""
    try:
        from cluster.config import Settings

        extra = tuple(getattr(Settings.from_env(), "script_modules", ()) or ())
    except PrelabelError:
        extra = ()
    return frozenset(DEFAULT_ALLOWED) | frozenset(extra)


def _report(source: str, trusted: bool) -> ScriptReport:
    """The worker's own static check for this trust level (see ``pool._Program``)."""
    if trusted:
        return check_script(source, None, frozenset())
    return check_script(source, _allowed_untrusted(), DEFAULT_DENIED)


def _print_problems(path: str, report: ScriptReport) -> None:
    for message, line in zip(report.problems, report.lines):
        print(_located(path, message, line), file=sys.stderr)


def cmd_script_check(args: argparse.Namespace) -> int:
    """Exit 0 and print the style and imports, or print each problem as FILE:LINE: message and exit 1."""
    try:
        source = _read_source(args.file)
    except PrelabelError as exc:
        print(f"prelabel: error: {exc.message}", file=sys.stderr)  # a bad file or argument: exit 2, as everywhere
        return 2
    report = _report(source, args.trusted)
    level = "trusted" if args.trusted else "untrusted"
    if not report.ok:
        _print_problems(args.file, report)
        print(f"{args.file}: {len(report.problems)} problem(s) for {'a' if args.trusted else 'an'} {level} script",
              file=sys.stderr)
        return 1
    style = report.style or STYLE_LEGACY
    how = ("interpret(outputs, frame, labels, context)" if style != STYLE_LEGACY
           else "CVAT 2019 globals detections/results")
    print(f"{args.file}: ok, {style} style ({how}), {level}")
    print(f"imports: {', '.join(report.imports) if report.imports else '(none)'}")
    return 0


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PrelabelError(f"--frame takes WIDTHxHEIGHT in pixels, e.g. 1920x1080; got {text!r}") from None
    if w < 1 or h < 1 or w > 65536 or h > 65536:
        raise PrelabelError(f"--frame {text!r}: width and height must be between 1 and 65536")
    return w, h


def _load_outputs(path: str) -> dict[str, Any]:
    """The arrays of an .npz file by name, read without unpickling anything."""
    import zipfile

    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise PrelabelError(f"{path} holds a single array; save the outputs with "
                                "numpy.savez(path, output_name=array, ...) so that they have names")
        with loaded as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except PrelabelError:
        raise
    except OSError as exc:
        raise PrelabelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        text = str(exc)
        if "allow_pickle" in text or "Object arrays" in text:
            text = "it holds object arrays, which are not read (only numeric arrays, no pickles)"
        raise PrelabelError(f"cannot read the outputs in {path}: {text}") from None


def _load_labels(path: str | None) -> dict[str, str]:
    if path is None:
        print(f"note: no --labels given; using {json.dumps(DEFAULT_LABELS)} (a script whose shapes use other labels "
              "fails validation: pass CVAT's {\"label_map\": {...}} file)", file=sys.stderr)
        return dict(DEFAULT_LABELS)
    from cluster.models.labels import parse_label_map

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PrelabelError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_label_map(data)


def _print_script_error(path: str, err: ScriptError) -> None:
    line = err.line
    message = err.message
    if line and f"line {line}" not in message:
        message = f"{message} (script line {line})"
    print(f"{path}:{line}: {message}" if line else f"{path}: {message}", file=sys.stderr)
    tb = str(err.details.get("traceback") or "").strip()
    if tb:
        print(tb, file=sys.stderr)
    stderr = str(err.details.get("stderr") or "").strip()
    if stderr and stderr not in tb:
        print("script process stderr (last lines):\n" + stderr, file=sys.stderr)


def cmd_script_run(args: argparse.Namespace) -> int:
    """Run the script once in the workers' isolated runtime; print the validated shapes as JSON."""
    try:
        source = _read_source(args.file)
        report = _report(source, args.trusted)
        if not report.ok:
            _print_problems(args.file, report)
            return 1
        width, height = _frame_size(args.frame)
        outputs = _load_outputs(args.outputs)
        labels = _load_labels(args.labels)
        shapes = _run_once(args, source, labels, outputs, width, height)
    except _Failed:
        return 1
    except ScriptError as exc:
        _print_script_error(args.file, exc)
        return 1
    except PrelabelError as exc:
        print(f"prelabel: error: {exc.message}", file=sys.stderr)  # a bad file or argument: exit 2, as everywhere
        return 2
    # valid JSON, one shape per line
    print("[\n" + ",\n".join("  " + json.dumps(shape) for shape in shapes) + "\n]" if shapes else "[]")
    return 0


def _run_once(args: argparse.Namespace, source: str, labels: dict[str, str], outputs: dict[str, Any],
              width: int, height: int) -> list[dict[str, Any]]:
    from cluster.config import Settings
    from cluster.scripts import FrameInput, ScriptLimits, ScriptPool

    try:
        timeout = Settings.from_env().script_timeout_s
    except PrelabelError:
        timeout = Settings.script_timeout_s
    if args.timeout is not None:
        timeout = args.timeout
    name = args.name or Path(args.outputs).stem
    frame = FrameInput(id=0, name=name, width=width, height=height, outputs=outputs)
    began = time.perf_counter()
    with ScriptPool(ScriptLimits(timeout=timeout), allowed_untrusted=_allowed_untrusted()) as pool:
        runner = pool.get(source, labels=labels, trusted=args.trusted)
        (result,) = runner.run([frame], {"threshold": args.threshold})
        style = runner.style
    elapsed = time.perf_counter() - began
    if isinstance(result, ScriptError):
        _print_script_error(args.file, result)
        raise _Failed()
    kinds: dict[str, int] = {}
    for shape in result:
        kinds[shape["type"]] = kinds.get(shape["type"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no shapes"
    print(f"{args.file}: {summary} ({style} style, {'trusted' if args.trusted else 'untrusted'}, frame {name!r} "
          f"{width}x{height}, outputs {', '.join(f'{k}{list(v.shape)}' for k, v in outputs.items())}; "
          f"{elapsed * 1e3:.0f} ms including the process start)", file=sys.stderr)
    return result


def add_script_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `script check` and `script run` to a subparsers object (``parser.add_subparsers()``)."""
    from cluster.cli.checks import positive_seconds, threshold

    script = sub.add_parser("script", help="check or try an interpretation script locally",
                            description="Check or try an interpretation script locally, with the workers' own "
                                        "checks and isolated runtime. See docs/scripts.md.")
    ss = script.add_subparsers(dest="script_command", required=True)

    s = ss.add_parser("check", help="static checks: syntax, style, imports (allowlist for untrusted scripts)")
    s.add_argument("file", help="the script (.py)")
    s.add_argument("--trusted", action="store_true", help="check as an admin's trusted script (no allowlist)")
    s.set_defaults(func=cmd_script_check)

    s = ss.add_parser("run", help="run the script once on model outputs and print the shapes as JSON")
    s.add_argument("file", help="the script (.py)")
    s.add_argument("--outputs", required=True, metavar="ARRAYS.npz",
                   help="the model's outputs, one array per output name (numpy.savez(path, name=array, ...))")
    s.add_argument("--frame", required=True, metavar="WIDTHxHEIGHT", help="the original frame's size in pixels")
    s.add_argument("--labels", metavar="FILE",
                   help='label map: CVAT\'s {"label_map": {"1": "person"}}, the bare mapping, a serverless '
                        'function.yaml or its spec list '
                        f"(default {json.dumps(DEFAULT_LABELS)})")
    s.add_argument("--trusted", action="store_true", help="run as an admin's trusted script (full Python)")
    s.add_argument("--threshold", type=threshold, default=DEFAULT_THRESHOLD,
                   help=f"context['threshold'] (default {DEFAULT_THRESHOLD})")
    s.add_argument("--name", help="the frame's name as the script sees it (default: the .npz file's stem)")
    s.add_argument("--timeout", type=positive_seconds, default=None,
                   help="seconds for the call (default: PRELABEL_SCRIPT_TIMEOUT, 30)")
    s.set_defaults(func=cmd_script_run)
    return script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prelabel")
    add_script_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["script", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
