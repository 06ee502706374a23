"""Dashboard login sessions and login rate limiting, in Redis.

The browser's cookie holds only a random session id; Redis keeps, under the id's SHA-256 (so a
Redis dump holds no usable cookie), the user's name and the session's CSRF token, with an expiry.
Logging out deletes the record, so a copied cookie stops working at once; reissuing a user's API
token deletes every session of that user.

Failed logins are counted per client address in a fixed window; past the limit the address waits
for the window's end (``LoginLimiter``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import redis

from cluster.config import Settings
from cluster.store.base import PREFIX, now, redis_errors, text, texts

SESSION = PREFIX + "session:"  # + sha256(session id): hash {user, csrf, created_at}
USER_SESSIONS = PREFIX + "user-sessions:"  # + user name: set of sha256(session id)
LOGIN_FAILURES = PREFIX + "login-failures:"  # + what: counter with the window as its expiry


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    csrf: str
    created_at: float


class SessionStore:
    def __init__(self, client: redis.Redis, ttl_s: float = Settings.session_ttl_s) -> None:
        self.r = client
        self.ttl_s = max(1, int(ttl_s))

    def create(self, user: str) -> Session:
        """A new session for ``user``; its id goes in the cookie and is not stored anywhere."""
        session = Session(id=secrets.token_urlsafe(32), user=user, csrf=secrets.token_urlsafe(32), created_at=now())
        key = SESSION + _hash(session.id)
        with redis_errors("create a session"):
            pipe = self.r.pipeline()
            pipe.hset(key, mapping={"user": user, "csrf": session.csrf, "created_at": repr(session.created_at)})
            pipe.expire(key, self.ttl_s)
            pipe.sadd(USER_SESSIONS + user, _hash(session.id))
            pipe.expire(USER_SESSIONS + user, self.ttl_s)
            pipe.execute()
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        with redis_errors("read a session"):
            data = self.r.hgetall(SESSION + _hash(session_id))
        if not data or "user" not in data or "csrf" not in data:
            return None
        return Session(id=session_id, user=text(data["user"]), csrf=text(data["csrf"]),
                       created_at=float(data.get("created_at") or 0))

    def delete(self, session_id: str | None) -> None:
        if not session_id or len(session_id) > 128:
            return
        key = SESSION + _hash(session_id)
        with redis_errors("end a session"):
            user = self.r.hget(key, "user")
            pipe = self.r.pipeline()
            pipe.delete(key)
            if user:
                pipe.srem(USER_SESSIONS + text(user), _hash(session_id))
            pipe.execute()

    def revoke_user(self, user: str) -> int:
        """End every session of ``user``; return how many there were."""
        with redis_errors("end a user's sessions"):
            hashes = texts(self.r.smembers(USER_SESSIONS + user))
            pipe = self.r.pipeline()
            for h in hashes:
                pipe.delete(SESSION + h)
            pipe.delete(USER_SESSIONS + user)
            results = pipe.execute()
        return sum(1 for n in results[: len(hashes)] if n)


class LoginLimiter:
    """At most ``max_failures`` failed logins per key (a client address) in ``window_s`` seconds."""

    def __init__(self, client: redis.Redis, max_failures: int = Settings.login_max_failures,
                 window_s: float = Settings.login_window_s) -> None:
        self.r = client
        self.max_failures = max(1, int(max_failures))
        self.window_s = max(1, int(window_s))

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        name = LOGIN_FAILURES + _hash(key)
        with redis_errors("check the login limit"):
            pipe = self.r.pipeline()
            pipe.get(name)
            pipe.ttl(name)
            count, ttl = pipe.execute()
        if count is None or int(count) < self.max_failures:
            return 0
        return max(1, int(ttl)) if ttl and ttl > 0 else self.window_s

    def failed(self, key: str) -> int:
        """Count a failure of ``key``; return the failures in the current window."""
        name = LOGIN_FAILURES + _hash(key)
        with redis_errors("count a failed login"):
            pipe = self.r.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.window_s, nx=True)
            count, _ = pipe.execute()
        return int(count)

    def reset(self, key: str) -> None:
        with redis_errors("reset the login limit"):
            self.r.delete(LOGIN_FAILURES + _hash(key))
