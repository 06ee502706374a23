"""Accounts and API tokens. Only a token's SHA-256 is stored, so a Redis dump leaks no credential."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import redis

from cluster.errors import Conflict, InvalidInput, NotFound, Unauthorized
from cluster.store.base import PREFIX, dumps, loads, now, redis_errors, text

USERS = PREFIX + "users"
TOKENS = PREFIX + "tokens"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# Replace an account's record (ARGV[2] the record read, ARGV[3] the new one, ARGV[4] '1' if the new
# one is an enabled admin), unless it changed since it was read or the change would leave no enabled
# admin: checked and written in one step, so two admins demoting each other at once cannot both
# succeed. The records are written by Python (cjson would round their times), only read here.
_UPDATE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'missing' end
if raw ~= ARGV[2] then return 'changed' end
local function active_admin(u) return u.admin == true and u.disabled ~= true end
if active_admin(cjson.decode(raw)) and ARGV[4] ~= '1' then
  local all = redis.call('HGETALL', KEYS[1])
  local others = 0
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] and active_admin(cjson.decode(all[i + 1])) then others = others + 1 end
  end
  if others == 0 then return 'last admin' end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 'ok'
"""


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    created_at: float
    disabled: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "admin": self.admin, "created_at": self.created_at, "disabled": self.disabled}

    @classmethod
    def from_record(cls, data: dict) -> User:
        """From the stored record (which also holds the token's hash: never copied out)."""
        return cls(name=data["name"], admin=bool(data["admin"]), created_at=data["created_at"],
                   disabled=bool(data.get("disabled", False)))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._update = client.register_script(_UPDATE)

    def add(self, name: str, admin: bool = False) -> tuple[User, str]:
        """Create an account and return it with its token, shown this once only."""
        if not NAME_RE.match(name):
            raise InvalidInput("user names are 1-64 letters, digits, '.', '_' or '-'")
        token = secrets.token_urlsafe(32)
        user = User(name=name, admin=admin, created_at=now())
        with redis_errors("create a user"):
            if not self.r.hsetnx(USERS, name, dumps(user.to_dict() | {"token": _hash(token)})):
                raise Conflict(f"user {name!r} already exists")
            self.r.hset(TOKENS, _hash(token), name)
        return user, token

    def bootstrap_admin(self, name: str, token: str) -> bool:
        """Make ``name`` an admin whose token is ``token`` (kept by the operator, e.g. in a Kubernetes
        Secret). True if created; False if it already exists with that token, so a Job rerun is a
        no-op; Conflict if it exists with another token (rotating is a deliberate act, not a rerun)."""
        if not NAME_RE.match(name):
            raise InvalidInput("user names are 1-64 letters, digits, '.', '_' or '-'")
        if len(token) < 24:
            raise InvalidInput("the bootstrap token must be at least 24 characters (e.g. openssl rand -hex 32)")
        user = User(name=name, admin=True, created_at=now())
        with redis_errors("create the first admin"):
            owner = self.r.hget(TOKENS, _hash(token))
            if owner is not None and owner != name:
                raise Conflict(f"that token already belongs to user {owner!r}")
            if self.r.hsetnx(USERS, name, dumps(user.to_dict() | {"token": _hash(token)})):
                self.r.hset(TOKENS, _hash(token), name)
                return True
            existing = loads(self.r.hget(USERS, name))
        if existing.get("token") != _hash(token):
            raise Conflict(f"user {name!r} already exists with another token; rotate it with `prelabel users` "
                           "or bootstrap another name")
        return False

    def get(self, name: str) -> User:
        with redis_errors("read a user"):
            raw = self.r.hget(USERS, name)
        if raw is None:
            raise NotFound(f"no user named {name!r}")
        return User.from_record(loads(raw))

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("an API token is required (Authorization: Bearer TOKEN)")
        with redis_errors("check a token"):
            name = self.r.hget(TOKENS, _hash(token))
        if name is None:
            raise Unauthorized("the API token is not valid")
        user = self.get(text(name))
        if user.disabled:
            raise Unauthorized(f"the account {user.name!r} is disabled; an admin can enable it again")
        return user

    def update(self, name: str, *, admin: bool | None = None, disabled: bool | None = None) -> User:
        """Change an account's role and access; Conflict if that would leave no enabled admin.
        Disabling also ends the account's dashboard sessions (its token is refused while disabled)."""
        for _ in range(10):  # the record read is compared before the write: another change retries
            with redis_errors("change a user"):
                raw = self.r.hget(USERS, name)
                if raw is None:
                    raise NotFound(f"no user named {name!r}")
                data = loads(raw)
                if admin is not None:
                    data["admin"] = admin
                if disabled is not None:
                    data["disabled"] = disabled
                active = bool(data["admin"]) and not data.get("disabled", False)
                why = text(self._update(keys=[USERS], args=[name, raw, dumps(data), "1" if active else "0"]))
            if why != "changed":
                break
        if why == "missing":
            raise NotFound(f"no user named {name!r}")
        if why == "last admin":
            raise Conflict(f"{name!r} is the last enabled admin: make another user an admin first")
        if why != "ok":
            raise Conflict(f"user {name!r} kept changing while this change was made; try again")
        if disabled:
            from cluster.store.sessions import SessionStore

            SessionStore(self.r).revoke_user(name)
        return self.get(name)

    def new_token(self, name: str) -> str:
        """Replace a user's token, revoking the old one and ending the user's dashboard sessions
        (one opened with a leaked token must not outlive it)."""
        with redis_errors("rotate a token"):
            raw = self.r.hget(USERS, name)
            if raw is None:
                raise NotFound(f"no user named {name!r}")
            data = loads(raw)
            token = secrets.token_urlsafe(32)
            pipe = self.r.pipeline()
            pipe.hdel(TOKENS, data["token"])
            pipe.hset(TOKENS, _hash(token), name)
            pipe.hset(USERS, name, dumps(data | {"token": _hash(token)}))
            pipe.execute()
        from cluster.store.sessions import SessionStore

        SessionStore(self.r).revoke_user(name)
        return token

    def list(self) -> list[User]:
        with redis_errors("list users"):
            raw = self.r.hvals(USERS)
        return sorted((User.from_record(loads(v)) for v in raw), key=lambda u: u.name)
