"""One queue per OpenVINO device, so a worker serves exactly the device it was started for."""

from __future__ import annotations

import re

from cluster.errors import InvalidInput

#: Queues that always exist, even on hosts without the device, so jobs for them can be queued
#: and a worker started on a machine that has the device picks them up.
KNOWN_DEVICES: tuple[str, ...] = ("CPU", "GPU", "NPU")

_DEVICE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[0-9]+)?$")


def normalize_device(device: str) -> str:
    name = (device or "").strip().upper()
    if not _DEVICE.match(name):
        raise InvalidInput(f"bad device name {device!r}; use an OpenVINO device such as CPU or GPU")
    return name


def queue_for(device: str) -> str:
    return f"annotate.{normalize_device(device)}"
