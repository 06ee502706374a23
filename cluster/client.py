"""The client of the JSON API, Prelabel's SDK: the CLI's commands (all but the operator ones), the zoo
installer, the demo and the benchmarks talk HTTP through it alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import requests

from cluster.config import Settings, prelabel_home
from cluster.errors import PrelabelError, ServiceUnavailable, Unauthorized


def token_file() -> Path:
    return prelabel_home() / "token"


def saved_token() -> str:
    try:
        return token_file().read_text().strip()
    except FileNotFoundError:
        return ""


def save_token(token: str) -> Path:
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(token + "\n")
    return path


class ApiError(PrelabelError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ApiClient:
    def __init__(self, settings: Settings, token: str | None = None, timeout: float = 600.0) -> None:
        if not settings.api_url:
            raise ServiceUnavailable(
                "no Prelabel API found: start a local cluster with `prelabel up`, or set PRELABEL_API_URL"
            )
        self.base = settings.api_url.rstrip("/")
        self.token = token or settings.token or saved_token()
        if not self.token:
            raise Unauthorized(
                "no API token: set PRELABEL_TOKEN, or run `prelabel login TOKEN` with the token "
                "`prelabel users add NAME` printed"
            )
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.timeout = timeout

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.request(method, self.base + path, timeout=self.timeout, stream=stream, **kwargs)
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc)
            raise ServiceUnavailable(f"cannot reach the Prelabel API at {self.base}: {reason} (is the cluster "
                                     "running? `prelabel up` starts one)") from exc
        except requests.RequestException as exc:  # a bad URL, a timeout, a body that cannot be sent
            raise ServiceUnavailable(f"request to the Prelabel API at {self.base} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ApiError(response.status_code, body.get("error", "error"), body.get("message", response.text))
            except ValueError:
                raise ApiError(response.status_code, "error", response.text[:500]) from None
        return response

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "error", f"{response.url} did not answer with JSON: is "
                           f"{self.base} a Prelabel API?") from None

    def get(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("GET", path, **kw))

    def get_page(self, path: str, **kw: Any) -> tuple[Any, int | None]:
        """A paged list (``GET /api/jobs``): the body, and the total from ``X-Total-Count`` when sent."""
        response = self.request("GET", path, **kw)
        total = response.headers.get("X-Total-Count")
        return self._json(response), int(total) if total and total.isdigit() else None

    def post(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("POST", path, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("DELETE", path, **kw))

    # -- conveniences used by several commands --------------------------------------------------
    def ensure_dataset(self, name: str) -> dict[str, Any]:
        try:
            return self.get(f"/api/datasets/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        return self.post("/api/datasets", json={"name": name})

    def upload(self, dataset_id: str, name: str, data: BinaryIO) -> dict[str, Any]:
        return self.post(f"/api/datasets/{dataset_id}/files", files=[("file", (name, data))])

    def download(self, path: str, target: Path) -> int:
        response = self.request("GET", path, stream=True)
        size = 0
        tmp = target.with_name(target.name + ".part")
        try:
            with open(tmp, "wb") as out:
                for block in response.iter_content(1 << 20):
                    out.write(block)
                    size += len(block)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size
