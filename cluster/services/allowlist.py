"""The import allowlist of untrusted scripts: what they may import, and the admin's changes to it.

A script marked trusted (by an admin) may import anything installed; every other script only the
modules of the *effective* list: the built-in ``DEFAULT_ALLOWED`` (``scripts/imports.py``), the
deployment's ``PRELABEL_SCRIPT_MODULES`` (``settings.script_modules``) and the modules admins add at
run time, kept in Redis (``store/allowlist.py``). Registration checks scripts against it, and workers
read the admin's part again every few seconds (``scripts/pool.py``), so no restart is needed.

Admins may not add what would open the sandbox rather than widen the maths: the denied submodules
(``DEFAULT_DENIED``: FFI, compilers) and the modules that reach the operating system or the
interpreter's own machinery (``WAYS_OUT``); a script that needs those is one an admin marks trusted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cluster.config import Settings
from cluster.errors import Forbidden, InvalidInput, NotFound
from cluster.scripts.imports import DEFAULT_ALLOWED, DEFAULT_DENIED, module_exists
from cluster.store import Store
from cluster.store.users import User

MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_MODULE_LENGTH = 200
MAX_MODULES_PER_CHANGE = 50

#: Modules that reach the operating system, other processes, raw memory or the import machinery:
#: never on the list of untrusted scripts, whoever asks (a trusted script may import them).
WAYS_OUT: frozenset[str] = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "multiprocessing", "concurrent",
    "threading", "_thread", "signal", "socket", "ssl", "select", "selectors", "asyncio", "ctypes",
    "_ctypes", "cffi", "importlib", "imp", "pkgutil", "runpy", "builtins", "code", "codeop", "gc",
    "inspect", "marshal", "pickle", "_pickle", "shelve", "dbm", "shutil", "pathlib", "tempfile", "glob",
    "io", "_io", "mmap", "fcntl", "resource", "pty", "tty", "termios", "sysconfig", "site",
    "urllib", "http", "ftplib", "smtplib", "webbrowser", "sqlite3", "faulthandler", "tracemalloc",
    "cluster",
})


def _covers(names: Iterable[str], module: str) -> str | None:
    """The name in ``names`` that is ``module`` or one of its parent packages, if any."""
    names = set(names)
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in names:
            return prefix
    return None


def check_module(name: Any) -> str:
    """``name`` if an admin may add it, else InvalidInput saying why."""
    if not isinstance(name, str):
        raise InvalidInput(f"a module name must be a string, got {type(name).__name__} {name!r:.80}")
    name = name.strip()
    if not name or len(name) > MAX_MODULE_LENGTH or not MODULE_RE.match(name):
        raise InvalidInput(f"{name[:MAX_MODULE_LENGTH]!r} is not a module name: dotted Python identifiers, "
                           "like colorsys or scipy.ndimage")
    denied = _covers(DEFAULT_DENIED, name)
    if denied:
        raise InvalidInput(f"{name} cannot be allowed: {denied} is denied to scripts (a way out of the sandbox "
                           "through FFI or a compiler, not maths); mark the script trusted instead")
    way_out = _covers(WAYS_OUT, name)
    if way_out:
        raise InvalidInput(f"{name} cannot be allowed: {way_out} reaches the operating system or the "
                           "interpreter, not maths; mark the script trusted instead")
    if not module_exists(name):
        raise InvalidInput(f"{name} cannot be allowed: no such module is installed where the dashboard "
                           "checks scripts (install it in the image first)")
    return name


def listing(store: Store, settings: Settings) -> dict[str, Any]:
    """Every module untrusted scripts may import, each with where it comes from (``default``,
    ``settings`` or ``admin``, with who added it and when), the denied ones, and the effective names."""
    rows: dict[str, dict[str, Any]] = {}
    for module in sorted(DEFAULT_ALLOWED):
        rows[module] = {"module": module, "source": "default"}
    for module in sorted(settings.script_modules):
        rows.setdefault(module, {"module": module, "source": "settings"})
    for entry in store.allowlist.entries():
        rows.setdefault(entry["module"], {**entry, "source": "admin"})
    modules = [rows[name] for name in sorted(rows)]
    return {"modules": modules, "effective": [m["module"] for m in modules], "denied": sorted(DEFAULT_DENIED)}


def effective(store: Store, settings: Settings) -> frozenset[str]:
    """The names alone: what registration and workers check untrusted scripts against."""
    return frozenset(DEFAULT_ALLOWED) | frozenset(settings.script_modules) | store.allowlist.modules()


def add_modules(store: Store, settings: Settings, modules: Any, *, by: User | None) -> dict[str, Any]:
    """Allow ``modules`` (a list of names) for untrusted scripts; all are checked before any is added.
    ``by``: the admin asking (None: an operator at Redis). Names already allowed are left as they are.
    Answers the new listing with ``added`` (the names that were not allowed before)."""
    _require_admin(by, "change the script import allowlist")
    if not isinstance(modules, list) or not modules:
        raise InvalidInput("'modules' must be a non-empty list of module names")
    if len(modules) > MAX_MODULES_PER_CHANGE:
        raise InvalidInput(f"at most {MAX_MODULES_PER_CHANGE} modules at a time")
    names = list(dict.fromkeys(check_module(m) for m in modules))
    already = frozenset(DEFAULT_ALLOWED) | frozenset(settings.script_modules)
    new = [n for n in names if not _covers(already, n)]
    added = store.allowlist.add(new, by=by.name if by else "operator") if new else []
    return listing(store, settings) | {"added": added}


def remove_module(store: Store, settings: Settings, module: str, *, by: User | None) -> dict[str, Any]:
    """Take ``module`` off the admin's list (scripts importing it are refused from the next check,
    on workers within seconds). The built-in and settings entries are not the admin's to remove."""
    _require_admin(by, "change the script import allowlist")
    if store.allowlist.remove(module):
        return listing(store, settings) | {"removed": module}
    if module in DEFAULT_ALLOWED:
        raise InvalidInput(f"{module} is on the built-in list (scripts/imports.py DEFAULT_ALLOWED); "
                           "it cannot be removed here")
    if module in settings.script_modules:
        raise InvalidInput(f"{module} comes from PRELABEL_SCRIPT_MODULES; change that setting to remove it")
    raise NotFound(f"{module!r} is not on the admin's allowlist")


def _require_admin(by: User | None, what: str) -> None:
    if by is not None and not by.admin:
        raise Forbidden(f"only an admin can {what}")
