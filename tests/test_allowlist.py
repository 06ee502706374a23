"""The import allowlist of untrusted scripts, without a cluster: the names an admin may add, and a
script pool that reads the admin's list at run time (cached a few seconds, the last list kept when
it cannot be read)."""

from __future__ import annotations

import logging

import pytest

from cluster.errors import InvalidInput, ScriptError
from cluster.scripts import DEFAULT_ALLOWED, DEFAULT_DENIED, ScriptPool
from cluster.scripts.pool import LiveModules
from cluster.services.allowlist import WAYS_OUT, check_module

COLORSYS = '''
import colorsys

def interpret(outputs, frame, labels, context):
    h, s, v = colorsys.rgb_to_hsv(0.2, 0.4, 0.4)
    return [{"type": "rectangle", "label": "1", "points": [0, 0, 1 + h, 1 + v]}]
'''


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Source:
    """The admin's list as the store answers it; ``fail`` makes the next reads raise."""

    def __init__(self, *modules: str) -> None:
        self.modules = set(modules)
        self.reads = 0
        self.fail: Exception | None = None

    def __call__(self) -> frozenset[str]:
        self.reads += 1
        if self.fail:
            raise self.fail
        return frozenset(self.modules)


def test_colorsys_is_neither_built_in_nor_denied_so_it_is_a_fair_test_module():
    assert "colorsys" not in DEFAULT_ALLOWED and "colorsys" not in WAYS_OUT
    assert not any(d.split(".")[0] == "colorsys" for d in DEFAULT_DENIED)


@pytest.mark.parametrize("name", ["colorsys", " colorsys ", "xml.dom", "numpy.linalg"])
def test_an_installed_module_with_a_dotted_name_may_be_added(name):
    assert check_module(name) == name.strip()


@pytest.mark.parametrize("name, says", [
    ("", "is not a module name"),
    ("colour sys", "is not a module name"),
    ("1abc", "is not a module name"),
    ("a..b", "is not a module name"),
    ("a.", "is not a module name"),
    ("x" * 300, "is not a module name"),
    (5, "must be a string"),
    (None, "must be a string"),
    ("numpy.ctypeslib", "numpy.ctypeslib is denied to scripts"),
    ("numpy.f2py.crackfortran", "numpy.f2py is denied to scripts"),
    ("os", "reaches the operating system"),
    ("os.path", "os reaches the operating system"),
    ("subprocess", "reaches the operating system"),
    ("ctypes", "reaches the operating system"),
    ("importlib.util", "importlib reaches"),
    ("cluster.store", "cluster reaches"),
    ("no_such_module_anywhere", "no such module is installed"),
])
def test_a_name_an_admin_may_not_add_is_refused_with_why(name, says):
    with pytest.raises(InvalidInput) as refused:
        check_module(name)
    assert says in refused.value.message


def test_the_live_list_is_read_again_only_after_its_time_to_live():
    clock, source = Clock(), Source("colorsys")
    live = LiveModules(source, ttl=3.0, clock=clock)
    assert live() == {"colorsys"} and source.reads == 1
    source.modules.add("textwrap")
    clock.t = 2.9
    assert live() == {"colorsys"} and source.reads == 1
    clock.t = 3.0
    assert live() == {"colorsys", "textwrap"} and source.reads == 2


def test_a_failed_read_keeps_the_last_list_and_is_logged(caplog):
    clock, source = Clock(), Source("colorsys")
    live = LiveModules(source, ttl=1.0, clock=clock)
    assert live() == {"colorsys"}
    source.fail = ConnectionError("Redis is down")
    clock.t = 5.0
    with caplog.at_level(logging.WARNING, logger="cluster.scripts.pool"):
        assert live() == {"colorsys"}
    assert "Redis is down" in caplog.text and "last one read (1 modules)" in caplog.text
    clock.t = 5.5  # the failure is cached for the same time to live: no read per script check
    assert live() == {"colorsys"} and source.reads == 2
    source.fail = None
    source.modules = {"textwrap"}
    clock.t = 6.0
    assert live() == {"textwrap"}


def test_a_pool_allows_a_module_once_the_admins_list_has_it_without_a_new_pool():
    clock, source = Clock(), Source()
    with ScriptPool(extra_allowed=LiveModules(source, ttl=3.0, clock=clock)) as pool:
        with pytest.raises(ScriptError) as refused:
            pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        assert "import not allowed: colorsys (line 2)" in refused.value.message
        source.modules.add("colorsys")
        clock.t = 3.0
        runner = pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        assert runner is not None and len(pool) == 1
        assert pool.allowed(False) == DEFAULT_ALLOWED | {"colorsys"}
        assert pool.allowed(True) is None  # trusted scripts have no list


def test_the_modules_a_new_process_imports_first_include_an_admin_addition():
    clock, source = Clock(), Source("colorsys")
    with ScriptPool(extra_allowed=LiveModules(source, clock=clock)) as pool:
        pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        (group,) = pool._groups.values()
        load = group.program.load_message({"1": "thing"}, pool.limits)
        assert ["colorsys", 2] in load["imports"] and "colorsys" in load["allowed"]


def test_a_script_whose_module_is_removed_is_refused_at_its_next_check_and_its_processes_close():
    clock, source = Clock(), Source("colorsys")
    with ScriptPool(extra_allowed=LiveModules(source, ttl=3.0, clock=clock)) as pool:
        pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        (group,) = pool._groups.values()
        source.modules.clear()
        clock.t = 3.0
        with pytest.raises(ScriptError, match="import not allowed: colorsys"):
            pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        assert group.closed and len(pool) == 0


def test_an_unrelated_change_to_the_list_gives_the_script_a_group_built_with_the_new_list():
    clock, source = Clock(), Source("colorsys")
    with ScriptPool(extra_allowed=LiveModules(source, ttl=3.0, clock=clock)) as pool:
        pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        (old,) = pool._groups.values()
        assert pool.get(COLORSYS, {"1": "thing"}, prestart=False) is not None
        assert list(pool._groups.values()) == [old]  # same list: same group
        source.modules.add("textwrap")
        clock.t = 3.0
        pool.get(COLORSYS, {"1": "thing"}, prestart=False)
        (new,) = pool._groups.values()
        assert new is not old and old.closed and "textwrap" in (new.program.allowed or ())


def test_a_pool_without_a_live_list_keeps_its_fixed_one():
    with ScriptPool(allowed_untrusted=DEFAULT_ALLOWED | {"colorsys"}) as pool:
        assert pool.allowed(False) == DEFAULT_ALLOWED | {"colorsys"}
        pool.get(COLORSYS, {"1": "thing"}, prestart=False)
