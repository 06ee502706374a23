"""A worker's script processes, shared by its threads and jobs: one process group per script version.

``ScriptPool.get`` checks a script and hands out a ``ScriptRunner`` on the processes of that script
version at that trust level, keyed by (sha256 of the source, trusted); the runner is bound to the
caller's label map, so jobs with different label maps share the processes. At most ``max_scripts``
scripts keep processes; the least recently used one is closed to make room, and a runner still
holding it carries on with a fresh group on its next call.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cluster.errors import ScriptError
from cluster.scripts.group import ProcessGroup, Program, source_sha256
from cluster.scripts.imports import DEFAULT_ALLOWED, DEFAULT_DENIED
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.runner import ScriptRunner
from cluster.scripts.warmup import WarmUp

if TYPE_CHECKING:
    from cluster.config import Settings


class ScriptPool:
    """Script processes shared by a worker's threads, keyed by (sha256 of source, trusted).

    ``get`` checks the script (syntax, imports against the allowlist for untrusted scripts) and raises
    ScriptError if it is refused; otherwise it returns a ScriptRunner bound to the given label map.
    At most ``max_scripts`` scripts keep processes; the least recently used one is closed to make
    room (a runner still holding it transparently gets a fresh one on its next call). Thread-safe.
    """

    def __init__(
        self,
        limits: ScriptLimits | None = None,
        *,
        max_scripts: int = 8,
        allowed_untrusted: Iterable[str] = DEFAULT_ALLOWED,
        allowed_trusted: Iterable[str] | None = None,
        denied_untrusted: Iterable[str] = DEFAULT_DENIED,
    ) -> None:
        self.limits = limits or ScriptLimits()
        self.max_scripts = max(1, int(max_scripts))
        self._allowed = {False: frozenset(allowed_untrusted),
                         True: frozenset(allowed_trusted) if allowed_trusted is not None else None}
        self._denied = frozenset(denied_untrusted)
        self._groups: collections.OrderedDict[tuple[str, bool], ProcessGroup] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, limits: ScriptLimits | None = None) -> ScriptPool:
        """A worker's pool: ``limits`` (by default ``ScriptLimits.from_settings``), and the untrusted
        allowlist widened by the admin's ``script_modules``."""
        extra = frozenset(settings.script_modules)
        allowed = frozenset(DEFAULT_ALLOWED) | extra if extra else DEFAULT_ALLOWED
        return cls(limits or ScriptLimits.from_settings(settings), allowed_untrusted=allowed)

    def _group_for(self, source: str, trusted: bool) -> ProcessGroup:
        key = (source_sha256(source), bool(trusted))
        evicted: list[ProcessGroup] = []
        with self._lock:
            if self._closed:
                raise ScriptError("the script pool is closed", kind="closed")
            group = self._groups.get(key)
            if group is not None and not group.closed:
                self._groups.move_to_end(key)
                return group
            program = Program(source, bool(trusted), self._allowed[bool(trusted)], self._denied)
            group = ProcessGroup(program, self.limits)
            self._groups[key] = group
            while len(self._groups) > self.max_scripts:
                _, old = self._groups.popitem(last=False)
                evicted.append(old)
        for old in evicted:
            old.close()
        return group

    def get(self, source: str, labels: Mapping[Any, str], trusted: bool = False, *,
            prestart: bool = True, warm_up: WarmUp | None = None) -> ScriptRunner:
        """A runner for ``source``; unless ``prestart=False`` its process starts in the background
        now if none is ready (see ``ScriptRunner.prestart``). ``warm_up``: frames each new process
        of this script interprets before its first real one (``warmup.py``; the first offer counts)."""
        group = self._group_for(source, trusted)
        runner = ScriptRunner.sharing(group, labels, regroup=lambda: self._group_for(source, trusted),
                                      warm_up=warm_up)
        if prestart:
            runner.prestart()
        return runner

    def __len__(self) -> int:
        with self._lock:
            return len(self._groups)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            groups = list(self._groups.values())
            self._groups.clear()
        for g in groups:
            g.close()

    def __enter__(self) -> ScriptPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
