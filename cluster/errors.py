"""The project's one error tree.

Third-party errors (redis, minio, openvino, PIL) are translated into these where they enter the
code, so callers and the API layer only ever handle ``PrelabelError`` subclasses. Each class carries
the HTTP status the API answers with, so views never map errors by hand.
"""

from __future__ import annotations


class PrelabelError(Exception):
    """Base of every error Prelabel raises on purpose."""

    status: int = 500
    code: str = "error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(PrelabelError):
    code = "config"


class InvalidInput(PrelabelError):
    status = 400
    code = "invalid_input"


class Unauthorized(PrelabelError):
    status = 401
    code = "unauthorized"


class Forbidden(PrelabelError):
    status = 403
    code = "forbidden"


class NotFound(PrelabelError):
    status = 404
    code = "not_found"


class Conflict(PrelabelError):
    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class ServiceUnavailable(PrelabelError):
    status = 503
    code = "unavailable"


class StorageError(ServiceUnavailable):
    code = "storage"


class BrokerError(ServiceUnavailable):
    code = "broker"


class ModelError(InvalidInput):
    """A model cannot be read, preprocessed, compiled or run."""

    code = "model"


class DeviceUnavailable(PrelabelError):
    """The OpenVINO device a worker or job asks for does not exist on this host."""

    code = "device_unavailable"


class ScriptError(InvalidInput):
    """An interpretation script failed: syntax, import, runtime error, limit or bad result."""

    code = "script"

    @property
    def line(self) -> int:
        """The script line the error points at (its ``line`` detail); 0 when it points at none."""
        line = self.details.get("line")
        return line if isinstance(line, int) else 0


class FrameError(PrelabelError):
    """One frame cannot be annotated (corrupt image, script failure); the chunk goes on."""

    code = "frame"
