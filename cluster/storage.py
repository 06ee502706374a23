"""Object storage: the one place that talks S3 (MinIO client), and the key layout.

Every key is derived from ids only, so a retried message writes the same key again instead of a
second copy. minio and urllib3 errors are translated into ``StorageError``/``NotFound`` here.
"""

from __future__ import annotations

import io
import threading
from typing import IO, Iterator

import msgpack
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from cluster.config import Settings
from cluster.errors import NotFound, StorageError


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
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise StorageError(f"cannot reach S3 bucket {self.bucket!r}: {exc}") from exc
            self._bucket_ready = True

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.fput_object(self.bucket, key, path, content_type=content_type)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            return response.read()
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise NotFound(f"s3://{self.bucket}/{key} does not exist") from exc
            raise StorageError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def get_file(self, key: str, path: str) -> None:
        try:
            self.client.fget_object(self.bucket, key, path)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject"}:
                raise NotFound(f"s3://{self.bucket}/{key} does not exist") from exc
            raise StorageError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "NotFound"}:
                return False
            raise StorageError(f"cannot stat s3://{self.bucket}/{key}: {exc}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot stat s3://{self.bucket}/{key}: {exc}") from exc

    def list_keys(self, prefix: str) -> Iterator[str]:
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield obj.object_name
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list_keys(prefix)):
            try:
                self.client.remove_object(self.bucket, key)
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise StorageError(f"cannot delete s3://{self.bucket}/{key}: {exc}") from exc

    def put_msgpack(self, key: str, value: object) -> None:
        self.put_bytes(key, msgpack.packb(value, use_bin_type=True))

    def get_msgpack(self, key: str) -> object:
        return msgpack.unpackb(self.get_bytes(key), raw=False, strict_map_key=False)


def open_store(settings: Settings) -> ObjectStore:
    store = ObjectStore(settings)
    store.ensure_bucket()
    return store


__all__ = ["Keys", "ObjectStore", "open_store", "IO"]
