"""Owned records (datasets, models, jobs): lookup by id or by the owner's name for it, with access checks.

One implementation so that "a user cannot see or change another user's X" is enforced in one place.
Admins see everything.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from cluster.errors import Conflict, Forbidden, InvalidInput, NotFound
from cluster.store.base import PREFIX, dumps, loads, new_id, now, redis_errors, text, texts
from cluster.store.users import User

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class OwnedRecords:
    """Records of one kind, stored as a Redis hash each with JSON-encoded values."""

    kind: str = "record"
    named: bool = True

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def key(self, record_id: str) -> str:
        return f"{PREFIX}{self.kind}:{record_id}"

    def _index(self) -> str:
        return f"{PREFIX}{self.kind}s"

    def _names(self, owner: str) -> str:
        return f"{PREFIX}{self.kind}:names:{owner}"

    def _create(
        self, owner: User, name: str | None, fields: dict[str, Any], record_id: str | None = None
    ) -> dict[str, Any]:
        record_id = record_id or new_id()
        record = {"id": record_id, "owner": owner.name, "created_at": now(), **fields}
        if self.named:
            if not name or not NAME_RE.match(name):
                raise InvalidInput(f"{self.kind} names are 1-128 letters, digits, '.', '_' or '-', got {name!r}")
            record["name"] = name
        with redis_errors(f"create a {self.kind}"):
            if self.named and name is not None and not self.r.hsetnx(self._names(owner.name), name, record_id):
                raise Conflict(f"you already have a {self.kind} named {name!r}")
            pipe = self.r.pipeline()
            pipe.hset(self.key(record_id), mapping={k: dumps(v) for k, v in record.items()})
            pipe.zadd(self._index(), {record_id: record["created_at"]})
            pipe.execute()
        return record

    def _read(self, record_id: str) -> dict[str, Any] | None:
        with redis_errors(f"read a {self.kind}"):
            raw = self.r.hgetall(self.key(record_id))
        if not raw:
            return None
        return {text(k): loads(v) for k, v in raw.items()}

    def get(self, user: User, ref: str) -> dict[str, Any]:
        """Find a record the user may see, by id or by the user's own name for it."""
        record = self._read(ref) if re.fullmatch(r"[0-9a-f]{12}", ref or "") else None
        if record is None and self.named:
            with redis_errors(f"find a {self.kind}"):
                record_id = self.r.hget(self._names(user.name), ref)
            record = self._read(text(record_id)) if record_id else None
        if record is None:
            raise NotFound(f"no {self.kind} {ref!r}")
        if record["owner"] != user.name and not user.admin:
            # Same answer as a missing record: do not reveal that another user's record exists.
            raise NotFound(f"no {self.kind} {ref!r}")
        return record

    def get_unchecked(self, record_id: str) -> dict[str, Any]:
        """For workers, which act on ids carried by messages, not on behalf of a user."""
        record = self._read(record_id)
        if record is None:
            raise NotFound(f"no {self.kind} {record_id!r}")
        return record

    def require_owner(self, user: User, record: dict[str, Any]) -> None:
        if record["owner"] != user.name and not user.admin:
            raise Forbidden(f"you do not own {self.kind} {record['id']}")

    def list(self, user: User, limit: int = 200) -> list[dict[str, Any]]:
        with redis_errors(f"list {self.kind}s"):
            ids = texts(self.r.zrevrange(self._index(), 0, -1))
        out = []
        for record_id in ids:
            record = self._read(record_id)
            if record and (user.admin or record["owner"] == user.name):
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    def any_with(self, field: str, value: Any) -> str | None:
        """The id of some record whose ``field`` is ``value`` (any owner), or None. A scan: for rare calls."""
        with redis_errors(f"list {self.kind}s"):
            ids = texts(self.r.zrevrange(self._index(), 0, -1))
            for record_id in ids:
                raw = self.r.hget(self.key(record_id), field)
                if raw is not None and loads(raw) == value:
                    return record_id
        return None

    def update(self, record_id: str, **fields: Any) -> None:
        with redis_errors(f"update a {self.kind}"):
            self.r.hset(self.key(record_id), mapping={k: dumps(v) for k, v in fields.items()})
