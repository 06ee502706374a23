"""ScriptLimits and ScriptStats: the one object that tunes a script's processes, and what they count."""

import dataclasses

import pytest

from cluster.config import Settings
from cluster.scripts.limits import MIN_LOAD_TIMEOUT_S, ScriptLimits
from cluster.scripts.pool import ScriptPool
from cluster.scripts.sandbox.policy import DEFAULT_POLICY
from cluster.scripts.stats import ScriptStats


def test_limits_are_normalised_once_when_made():
    limits = ScriptLimits(timeout=5, processes=0, batch_frames=0, max_failures=0, max_message=1 << 20)
    assert limits.timeout == 5.0 and isinstance(limits.timeout, float)
    assert (limits.processes, limits.batch_frames, limits.max_failures) == (1, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.timeout = 1.0  # type: ignore[misc]


def test_the_load_timeout_defaults_to_the_call_timeout_but_at_least_the_minimum():
    assert ScriptLimits(timeout=5).load_seconds == MIN_LOAD_TIMEOUT_S
    assert ScriptLimits(timeout=90).load_seconds == 90.0
    assert ScriptLimits(timeout=5, load_timeout=2).load_seconds == 2.0
    assert dataclasses.replace(ScriptLimits(timeout=5), timeout=60).load_seconds == 60.0


def test_a_workers_limits_come_from_its_settings():
    settings = Settings.from_env({"PRELABEL_HOME": "/nonexistent", "PRELABEL_SCRIPT_TIMEOUT": "12",
                                  "PRELABEL_WORKER_THREADS": "3"})
    assert ScriptLimits.from_settings(settings) == ScriptLimits(timeout=12.0, processes=3)
    with ScriptPool.from_settings(settings) as pool:
        assert pool.limits == ScriptLimits(timeout=12.0, processes=3)
        assert pool.limits.sandbox is DEFAULT_POLICY  # no setting changes the sandbox policy
    with ScriptPool.from_settings(settings, ScriptLimits(timeout=60)) as pool:
        assert pool.limits.timeout == 60.0 and pool.limits.processes == 1


def test_stats_are_typed_and_a_copy_does_not_move_with_the_original():
    stats = ScriptStats()
    snapshot = stats.copy()
    stats.spawns += 1
    stats.last_load_s = 0.25
    assert snapshot.spawns == 0 and snapshot.last_load_s == 0.0
    assert stats.as_dict()["spawns"] == 1 and stats.as_dict()["last_load_s"] == 0.25
