"""Object storage: the one place that talks S3 (MinIO client), and the key layout.

Every key is derived from ids only, so a retried message writes the same key again instead of a
second copy. minio and urllib3 errors are translated into ``StorageError``/``NotFound`` here.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from typing import IO

import msgpack
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from cluster.config import Settings
from cluster.errors import ConfigError, NotFound, StorageError


class Keys:
    """The bucket's layout. Frames are content-addressed, so re-uploading a file stores nothing new."""

    @staticmethod
    def frame(dataset_id: str, digest: str, ext: str) -> str:
        return f"datasets/{dataset_id}/frames/{digest}.{ext}"

    @staticmethod
    def model_file(model_id: str, filename: str) -> str:
        return f"models/{model_id}/{filename}"

    @staticmethod
    def chunk_result(job_id: str, chunk: int) -> str:
        return f"jobs/{job_id}/chunks/{chunk:08d}.msgpack"

    @staticmethod
    def chunk_prefix(job_id: str) -> str:
        return f"jobs/{job_id}/chunks/"

    @staticmethod
    def revision(job_id: str, frame: int, revision: int, token: str) -> str:
        """One corrected revision of a frame's shapes. ``token`` is drawn per write: two edits racing
        for the same revision number each write their own object, and only the winner's is indexed."""
        return f"jobs/{job_id}/revisions/{frame:08d}/{revision:06d}-{token}.msgpack"

    @staticmethod
    def revision_prefix(job_id: str) -> str:
        return f"jobs/{job_id}/revisions/"

    @staticmethod
    def evaluation(job_id: str) -> str:
        """The job's last quality report (JSON), replaced by the next one."""
        return f"jobs/{job_id}/evaluation.json"


class ObjectStore:
    def __init__(self, settings: Settings) -> None:
        if not settings.s3_endpoint:
            raise StorageError("no S3 endpoint is configured (S3_ENDPOINT), and no local cluster is running")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            maxsize=32,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            http_client=http,
        )
        self.bucket = settings.s3_bucket
        self._bucket_ready = False
        self._lock = threading.Lock()

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock:
            try:
                if not self.client.bucket_exists(self.bucket):
                    try:
                        self.client.make_bucket(self.bucket)
                    except S3Error as exc:
                        if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                            raise
            except ValueError as exc:  # minio checks names locally
                raise ConfigError(f"S3_BUCKET {self.bucket!r} is not a valid bucket name: {exc}") from exc
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise StorageError(f"cannot reach S3 bucket {self.bucket!r}: {exc}") from exc
            self._bucket_ready = True

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate minio/urllib3 errors at the one place they enter: a missing key is NotFound."""
        try:
            yield
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:  # stat answers NotFound
                raise NotFound(f"s3://{self.bucket}/{key} does not exist") from exc
            raise StorageError(f"cannot {action} s3://{self.bucket}/{key}: {exc}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot {action} s3://{self.bucket}/{key}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._errors("write", key):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        with self._errors("write", key):
            self.client.fput_object(self.bucket, key, path, content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        with self._errors("read", key):
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_file(self, key: str, path: str) -> None:
        with self._errors("read", key):
            self.client.fget_object(self.bucket, key, path)

    def exists(self, key: str) -> bool:
        try:
            with self._errors("stat", key):
                self.client.stat_object(self.bucket, key)
        except NotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        with self._errors("list", prefix):
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield obj.object_name

    def delete(self, key: str) -> None:
        """Remove one object (S3 answers a missing key like a removed one)."""
        with self._errors("delete", key):
            self.client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list_keys(prefix)):
            with self._errors("delete", key):
                self.client.remove_object(self.bucket, key)

    def put_msgpack(self, key: str, value: object) -> None:
        self.put_bytes(key, msgpack.packb(value, use_bin_type=True))

    def get_msgpack(self, key: str) -> object:
        return msgpack.unpackb(self.get_bytes(key), raw=False, strict_map_key=False)


def open_object_store(settings: Settings) -> ObjectStore:
    store = ObjectStore(settings)
    store.ensure_bucket()
    return store


__all__ = ["Keys", "ObjectStore", "open_object_store", "IO"]
