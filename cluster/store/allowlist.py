"""The modules admins allow untrusted scripts to import, on top of the built-in list and the settings.

One Redis hash, module name -> who added it and when, so the admin page can say where each entry
came from. Workers read it (``modules``) when they check a script they have not seen with that list
(``scripts/pool.py`` caches it a few seconds), so an addition needs no restart.
"""

from __future__ import annotations

import redis

from cluster.store.base import PREFIX, dumps, loads, now, redis_errors, text

ALLOWLIST = PREFIX + "script_modules"


class AllowlistStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def modules(self) -> frozenset[str]:
        """The module names alone (what a worker's pool asks for)."""
        with redis_errors("read the script import allowlist"):
            return frozenset(text(m) for m in self.r.hkeys(ALLOWLIST))

    def entries(self) -> list[dict]:
        """Every entry as ``{"module", "added_by", "added_at"}``, sorted by module."""
        with redis_errors("read the script import allowlist"):
            raw = self.r.hgetall(ALLOWLIST)
        entries = []
        for module, record in raw.items():
            data = loads(record, {}) or {}
            entries.append({"module": text(module), "added_by": data.get("added_by"),
                            "added_at": data.get("added_at")})
        return sorted(entries, key=lambda e: e["module"])

    def add(self, modules: list[str], *, by: str) -> list[str]:
        """Add ``modules`` (already validated); those already listed keep their first record. Returns
        the ones that were new."""
        record = dumps({"added_by": by, "added_at": now()})
        with redis_errors("change the script import allowlist"):
            pipe = self.r.pipeline()
            for module in modules:
                pipe.hsetnx(ALLOWLIST, module, record)
            added = pipe.execute()
        return [m for m, new in zip(modules, added) if new]

    def remove(self, module: str) -> bool:
        """Remove one module; false when it was not listed."""
        with redis_errors("change the script import allowlist"):
            return bool(self.r.hdel(ALLOWLIST, module))
