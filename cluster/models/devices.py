"""Which OpenVINO devices this host has, and a clear error when a job asks for one it lacks."""

from __future__ import annotations

from typing import Any

from cluster.errors import DeviceUnavailable
from cluster.models.device_diagnosis import missing_device_reasons
from cluster.models.reading import describe_openvino_error

# Devices that are not hardware but route to other devices: "AUTO", "AUTO:GPU,CPU", "MULTI:...".
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


def available_devices(core: Any) -> list[str]:
    """The devices OpenVINO sees here, e.g. ``["CPU", "GPU.0", "GPU.1"]``."""
    try:
        return [str(d) for d in core.available_devices]
    except Exception as exc:  # a broken plugin makes the whole query fail
        raise DeviceUnavailable(f"cannot list OpenVINO devices: {describe_openvino_error(exc)}") from exc


def device_matches(asked: str, available: list[str]) -> bool:
    """``"GPU"`` matches ``"GPU"`` and ``"GPU.0"``; ``"GPU.1"`` only ``"GPU.1"``."""
    asked = asked.strip().upper()
    for name in available:
        name = name.upper()
        if name == asked or name.split(".", 1)[0] == asked:
            return True
    return False


def require_device(core: Any, device: str) -> None:
    """Raise :class:`DeviceUnavailable` unless ``device`` can run here.

    Virtual devices (``AUTO``, ``AUTO:GPU,CPU``, ``MULTI:...``, ``HETERO:...``) need each device they
    list; a bare ``AUTO`` needs any device.
    """
    asked = (device or "").strip().upper()
    available = available_devices(core)
    listing = ", ".join(available) if available else "none"
    if not asked:
        raise DeviceUnavailable(f"no OpenVINO device named; available: {listing}", available=available)
    head, _, rest = asked.partition(":")
    if head in _VIRTUAL:
        wanted = [d.split("(")[0].strip() for d in rest.split(",") if d.strip()]
        if not wanted and available:
            return
    else:
        wanted = [asked]
    missing = [d for d in wanted if not device_matches(d, available)]
    if missing or not available:
        what = ", ".join(repr(d) for d in missing) if missing else repr(device)
        reasons = [r for d in (missing or [asked]) for r in missing_device_reasons(d)]
        why = "; why: " + "; ".join(reasons) if reasons else ""
        raise DeviceUnavailable(
            f"OpenVINO device {what} is not available on this host; available: {listing}{why}",
            device=device,
            available=available,
        )


def describe_devices(available: list[str], wanted: list[str]) -> list[str]:
    """Lines for a worker's start: what OpenVINO sees, and why each wanted device is missing."""
    lines = [f"OpenVINO devices here: {', '.join(available) if available else 'none'}"]
    for device in wanted:
        if device_matches(device, available):
            continue
        reasons = missing_device_reasons(device)
        lines.append(f"{device}: not available" + (": " + "; ".join(reasons) if reasons else
                                                   " (OpenVINO found none; no host-side cause detected)"))
    return lines
