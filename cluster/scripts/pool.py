"""A worker's script processes, shared by its threads and jobs: one process group per script version.

``ScriptPool.get`` checks a script and hands out a ``ScriptRunner`` on the processes of that script
version at that trust level, keyed by (sha256 of the source, trusted); the runner is bound to the
caller's label map, so jobs with different label maps share the processes. At most ``max_scripts``
scripts keep processes; the least recently used one is closed to make room, and a runner still
holding it carries on with a fresh group on its next call.

The modules untrusted scripts may import are the pool's fixed list plus, when the pool is given
``extra_allowed``, the ones an admin allows at run time (``LiveModules``: the store's list, read at
most every few seconds). A script is checked against the list of the moment: a group built with
another list is checked again and replaced (its new processes import what the new list allows first,
before the sandbox closes), or closed when its script is no longer allowed.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cluster.errors import ScriptError
from cluster.scripts.group import ProcessGroup, Program, source_sha256
from cluster.scripts.imports import DEFAULT_ALLOWED, DEFAULT_DENIED
from cluster.scripts.limits import ScriptLimits
from cluster.scripts.runner import ScriptRunner
from cluster.scripts.warmup import WarmUp

if TYPE_CHECKING:
    from cluster.config import Settings

log = logging.getLogger(__name__)

#: How long a worker trusts the admin's list it read: an addition reaches every worker within this.
LIVE_MODULES_TTL_S = 3.0


class LiveModules:
    """The modules an admin allows at run time, read through ``read`` at most every ``ttl`` seconds.

    A failed read (Redis unreachable) is logged and answers the last list read (empty before the
    first success), so checking a script never fails because the list could not be read: a chunk
    goes on with what was known. Thread-safe; reads are not serialised (a few threads may read at
    once when the cache expires, which is harmless)."""

    def __init__(self, read: Callable[[], Iterable[str]], ttl: float = LIVE_MODULES_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: frozenset[str] = frozenset()
        self._until = float("-inf")

    def __call__(self) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            if now < self._until:
                return self._value
        try:
            value = frozenset(self._read())
        except Exception as exc:  # noqa: BLE001 - any failure: keep the last list, never fail a chunk
            log.warning("could not read the script import allowlist (%s); using the last one read (%d modules)",
                        exc, len(self._value))
            value = self._value
        with self._lock:
            self._value = value
            self._until = now + self.ttl
        return value


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
        extra_allowed: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.limits = limits or ScriptLimits()
        self.max_scripts = max(1, int(max_scripts))
        self._allowed = {False: frozenset(allowed_untrusted),
                         True: frozenset(allowed_trusted) if allowed_trusted is not None else None}
        self._extra = extra_allowed if extra_allowed is None or isinstance(extra_allowed, LiveModules) \
            else LiveModules(extra_allowed)
        self._denied = frozenset(denied_untrusted)
        self._groups: collections.OrderedDict[tuple[str, bool], ProcessGroup] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, limits: ScriptLimits | None = None, *,
                      extra_allowed: Callable[[], Iterable[str]] | None = None) -> ScriptPool:
        """A worker's pool: ``limits`` (by default ``ScriptLimits.from_settings``), and the untrusted
        allowlist widened by the settings' ``script_modules`` and by ``extra_allowed`` (the admin's
        list in the store, read again every few seconds: see ``LiveModules``)."""
        extra = frozenset(settings.script_modules)
        allowed = frozenset(DEFAULT_ALLOWED) | extra if extra else DEFAULT_ALLOWED
        return cls(limits or ScriptLimits.from_settings(settings), allowed_untrusted=allowed,
                   extra_allowed=extra_allowed)

    def allowed(self, trusted: bool) -> frozenset[str] | None:
        """What a script at this trust level may import now (None: anything installed)."""
        fixed = self._allowed[bool(trusted)]
        if fixed is None or self._extra is None:
            return fixed
        extra = self._extra()
        return fixed | extra if extra else fixed

    def _group_for(self, source: str, trusted: bool) -> ProcessGroup:
        key = (source_sha256(source), bool(trusted))
        allowed = self.allowed(trusted)  # before the lock: it may ask Redis
        evicted: list[ProcessGroup] = []
        with self._lock:
            if self._closed:
                raise ScriptError("the script pool is closed", kind="closed")
            group = self._groups.get(key)
            if group is not None and not group.closed:
                if group.program.allowed == allowed or group.program.trusted:
                    self._groups.move_to_end(key)
                    return group
                # the list changed since this group was built: check again with the new list and
                # give the script new processes (closed below; a runner holding it regroups)
                del self._groups[key]
                evicted.append(group)
            try:
                program = Program(source, bool(trusted), allowed, self._denied)
            except ScriptError:
                for old in evicted:
                    old.close()
                raise
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
