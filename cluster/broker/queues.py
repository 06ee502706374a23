"""One queue per OpenVINO device, so a worker serves exactly the device it was started for."""

from __future__ import annotations

import re

from cluster.errors import InvalidInput

#: Queues that always exist, even on hosts without the device, so jobs for them can be queued
#: and a worker started on a machine that has the device picks them up.
KNOWN_DEVICES: tuple[str, ...] = ("CPU", "GPU", "NPU")

#: Longest device name accepted (``GPU.12`` is 6; a 5,000-character name once made a queue).
MAX_DEVICE_LENGTH = 16

# OpenVINO's device names: a known device with an optional instance index (``GPU.1``), or AUTO
# (OpenVINO picks). Lists such as ``AUTO:GPU,CPU``, MULTI and HETERO are not served: a worker
# serves one queue named after one device, and such a queue would have no worker.
_DEVICE = re.compile(r"^(?:(?:CPU|GPU|NPU)(?:\.[0-9]{1,3})?|AUTO)$")


def normalize_device(device: str) -> str:
    """``device`` upper-cased and checked: CPU, GPU, NPU (optionally ``.N``) or AUTO."""
    raw = device if isinstance(device, str) else ""
    name = raw.strip().upper()
    if len(name) > MAX_DEVICE_LENGTH:
        raise InvalidInput(f"bad device name ({len(name)} characters): use an OpenVINO device "
                           f"such as CPU, GPU, GPU.1 or NPU", device=name[:MAX_DEVICE_LENGTH] + "...")
    if not _DEVICE.match(name):
        raise InvalidInput(f"bad device name {raw!r}: use an OpenVINO device such as CPU, GPU, "
                           f"GPU.1, NPU or AUTO", device=name)
    return name


def queue_for(device: str) -> str:
    return f"annotate.{normalize_device(device)}"
