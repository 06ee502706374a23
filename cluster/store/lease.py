"""A short Redis lease: which of several dashboard replicas exports the cluster-wide metrics.

Every replica can read queue depths and job counts from Redis; if each exported them, any
``sum()`` over pods would count them once per replica. The holder of the lease exports them; the
others export only that they are not the holder. A holder that dies lets the lease expire and
another replica takes it at its next scrape.
"""

from __future__ import annotations

import redis

from cluster.store.base import PREFIX, redis_errors

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, name: str, owner: str, ttl_s: float) -> None:
        self.key = f"{PREFIX}lease:{name}"
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease; True while this owner holds it."""
        with redis_errors("renew the metrics lease"):
            return bool(self._acquire(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self) -> None:
        """Give the lease up now (if held), so another holder need not wait for it to lapse."""
        with redis_errors("release the metrics lease"):
            self._release(keys=[self.key], args=[self.owner])
