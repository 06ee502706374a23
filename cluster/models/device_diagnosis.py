"""Why OpenVINO does not list a device: the host-side reasons a GPU or NPU plugin finds nothing.

OpenVINO only says a device is absent. In a container the usual causes are outside OpenVINO: the
GPU plugin needs the OpenCL loader (``libOpenCL.so.1``) and Intel's compute runtime registered as
an ICD, and the process needs read-write access to a render node (``/dev/dri/renderD*``), which
the device plugin mounts but whose group (``render``) a non-root pod only has through
``supplementalGroups``. The NPU plugin needs ``/dev/accel/accel*`` likewise. Naming the cause turns
a crash loop into a one-line fix.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

OPENCL_LIBRARY = "libOpenCL.so.1"
OPENCL_VENDORS = Path("/etc/OpenCL/vendors")


def _openvino_base(device: str) -> str:
    return device.strip().upper().split(":", 1)[0].split(".", 1)[0]


def _can_load(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _node_access(pattern: str, what: str, fix: str) -> list[str]:
    nodes = sorted(glob.glob(pattern))
    if not nodes:
        return [f"no {what} ({pattern}) in this container: {fix}"]
    usable = [n for n in nodes if os.access(n, os.R_OK | os.W_OK)]
    if usable:
        return []
    described = []
    for node in nodes:
        try:
            described.append(f"{node} (group {os.stat(node).st_gid})")
        except OSError:
            described.append(node)
    groups = ", ".join(str(g) for g in sorted(set(os.getgroups()) | {os.getgid()}))
    return [
        f"no read-write access to {', '.join(described)} for uid {os.getuid()} with groups {groups}: "
        "add the node's group id to the pod's securityContext.supplementalGroups"
    ]


def missing_device_reasons(
    device: str,
    *,
    can_load=_can_load,
    vendors: Path = OPENCL_VENDORS,
    render_glob: str = "/dev/dri/renderD*",
    accel_glob: str = "/dev/accel/accel*",
) -> list[str]:
    """Host-side reasons ``device`` cannot work here (empty when none is found)."""
    base = _openvino_base(device)
    if base == "GPU":
        reasons = []
        if not can_load(OPENCL_LIBRARY):
            reasons.append(
                f"no OpenCL library ({OPENCL_LIBRARY}): install ocl-icd-libopencl1 and intel-opencl-icd "
                "(the image's gpu target has both)"
            )
        elif not list(vendors.glob("*.icd")):
            reasons.append(f"no OpenCL driver registered in {vendors}: install intel-opencl-icd")
        reasons += _node_access(render_glob, "GPU render node",
                                "the pod has no GPU (request gpu.intel.com/i915 or gpu.intel.com/xe)")
        return reasons
    if base == "NPU":
        return _node_access(accel_glob, "NPU device node", "the pod has no NPU (is the NPU device plugin running?)")
    return []
