import numpy as np
import pytest

from cluster.config import Settings
from cluster.errors import ConfigError, ScriptError
from cluster.scripts import FrameInput, ScriptPool

COLORSYS = '''
import colorsys

def interpret(outputs, frame, labels, context):
    h, _, _ = colorsys.rgb_to_hsv(0.2, 0.4, 0.4)
    return [{"type": "tag", "label": "1", "attributes": {"hue": round(h, 3)}}]
'''


def test_settings_come_from_the_environment_with_types():
    s = Settings.from_env({"PRELABEL_HOME": "/nonexistent", "PRELABEL_DEVICES": "cpu, gpu",
                           "PRELABEL_CHUNK_SIZE": "8", "S3_SECURE": "yes", "PRELABEL_HEARTBEAT_TIMEOUT": "7.5"})
    assert s.devices == ("CPU", "GPU") and s.chunk_size == 8 and s.s3_secure is True
    assert s.heartbeat_timeout_s == 7.5


def test_a_bad_setting_names_the_variable_and_the_value():
    with pytest.raises(ConfigError, match="chunk_size.*'many'"):
        Settings.from_env({"PRELABEL_HOME": "/nonexistent", "PRELABEL_CHUNK_SIZE": "many"})


def test_an_admin_can_add_modules_to_the_untrusted_allowlist():
    frame = FrameInput(id=0, width=10, height=10, outputs={"x": np.zeros(1, np.float32)})
    default = ScriptPool.from_settings(Settings.from_env({"PRELABEL_HOME": "/nonexistent"}))
    try:
        with pytest.raises(ScriptError, match="import not allowed: colorsys"):
            default.get(COLORSYS, {"1": "thing"}).run([frame])
    finally:
        default.close()
    widened = ScriptPool.from_settings(
        Settings.from_env({"PRELABEL_HOME": "/nonexistent", "PRELABEL_SCRIPT_MODULES": "colorsys"}))
    try:
        [shapes] = widened.get(COLORSYS, {"1": "thing"}).run([frame])
        assert shapes[0]["attributes"] == {"hue": 0.5}
    finally:
        widened.close()



# Tunables that were module constants before they became settings: (field, variable, old default, a value).
MOVED_TUNABLES = [
    ("failing_warn_s", "PRELABEL_FAILING_WARN", 120.0, 30.0),
    ("pip_timeout_s", "PRELABEL_PIP_TIMEOUT", 900.0, 60.0),
    ("max_video_frames", "PRELABEL_MAX_VIDEO_FRAMES", 10_000, 500),
    ("metrics_lease_ttl_s", "PRELABEL_METRICS_LEASE_TTL", 60.0, 300.0),
]


@pytest.mark.parametrize("name, variable, default, value", MOVED_TUNABLES)
def test_the_tunables_that_lived_in_modules_are_settings_with_their_old_defaults(name, variable, default, value):
    assert getattr(Settings.from_env({"PRELABEL_HOME": "/nonexistent"}), name) == default
    assert getattr(Settings.from_env({"PRELABEL_HOME": "/nonexistent", variable: str(value)}), name) == value
