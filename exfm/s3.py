"""The S3 backend of the lake (see exfm/lake.py for the layout and the manifest protocol).

Endpoint, region and credentials come only from the standard AWS environment (AWS_ENDPOINT_URL or
AWS_ENDPOINT_URL_S3, AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN); nothing here is read from params or written to logs. Small objects (manifests,
snapshots) move through boto3; parquet files are read through pyarrow's S3 filesystem. Every request
is retried a bounded number of times (`lake.s3_max_attempts`), then fails with a LakeError that
names the endpoint, the bucket and the key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions as bce
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.config import Config as BotoConfig

from exfm import ids
from exfm.errors import LakeError
from exfm.stores import PART_FILE, Store

MANIFEST = "_manifest.json"
WRITES = "_writes"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_UNREACHABLE = (
    bce.EndpointConnectionError,
    bce.ConnectTimeoutError,
    bce.ReadTimeoutError,
    bce.ConnectionClosedError,
)


def endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region_from_env() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class S3Store(Store):
    """A lake under s3://bucket/prefix."""

    def __init__(
        self,
        root: str,
        *,
        max_attempts: int = 3,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        parsed = urlparse(root)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        if not _BUCKET.match(self.bucket):
            raise LakeError(f"lake root {root!r}: {self.bucket!r} is not a valid bucket name")
        for segment in self.prefix.split("/") if self.prefix else []:
            if not ids.OBJECT_SEGMENT.fullmatch(segment) or ".." in segment:
                raise LakeError(f"lake root {root!r}: bad prefix segment {segment!r}")
        self.endpoint = endpoint_from_env()
        self.max_attempts = max_attempts
        region = region_from_env()
        # a session of its own: boto3's default session keeps the credentials it resolved first,
        # so a long-lived process whose environment changes (a worker, a test run) would sign
        # with old keys while the pyarrow filesystem below reads the environment's
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=region,
            config=BotoConfig(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
            ),
        )
        fs_args: dict[str, Any] = {
            "region": region,
            "connect_timeout": connect_timeout_s,
            "request_timeout": read_timeout_s,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
        }
        if self.endpoint:
            url = urlparse(self.endpoint)
            fs_args.update(endpoint_override=url.netloc, scheme=url.scheme or "https")
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            fs_args.update(
                access_key=os.environ["AWS_ACCESS_KEY_ID"],
                secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                session_token=os.environ.get("AWS_SESSION_TOKEN"),
            )
        self.filesystem = pafs.S3FileSystem(**fs_args)

    # ---------------------------------------------------------------------------- naming

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def uri(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self.key(rel)}" if rel else f"s3://{self.bucket}/{self.prefix}"

    def fs_path(self, rel: str) -> str:
        return f"{self.bucket}/{self.key(rel)}"

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate botocore failures into LakeErrors that say what, where and why."""
        where = f"s3://{self.bucket}/{key}"
        try:
            yield
        except _UNREACHABLE as e:
            raise LakeError(
                f"S3 endpoint {self.endpoint or 'AWS default'} did not answer after "
                f"{self.max_attempts} attempts while {action} {where}: {e}"
            ) from e
        except bce.NoCredentialsError as e:
            raise LakeError(
                f"no AWS credentials while {action} {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment"
            ) from e
        except bce.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            if code == "NoSuchBucket":
                raise LakeError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS'} "
                    f"({action} {where})"
                ) from e
            raise LakeError(f"S3 error {code} while {action} {where}: {e}") from e

    # ---------------------------------------------------------------------------- objects

    def put_bytes(self, key: str, data: bytes) -> str:
        full = self.key(key)
        with self._errors("writing", full):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        data = self._get(self.key(key))
        if data is None:
            raise LakeError(f"{self.uri(key)} does not exist")
        return data

    def _get(self, full: str) -> bytes | None:
        try:
            with self._errors("reading", full):
                return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except LakeError as e:
            if isinstance(e.__cause__, bce.ClientError) and e.__cause__.response.get(
                "Error", {}
            ).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return bool(list(self._list(self.key(key), exact=True)))

    def delete_key(self, key: str) -> None:
        self._delete([self.key(key)])

    def list_keys(self, prefix: str) -> Iterable[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return [k[strip:] for k in self._list(self.key(prefix) + "/")]

    def _list(self, prefix: str, exact: bool = False) -> Iterator[str]:
        with self._errors("listing", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    if not exact or obj["Key"] == prefix:
                        yield obj["Key"]

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = keys[start : start + 1000]
            with self._errors("deleting", chunk[0]):
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk]}
                )

    # ---------------------------------------------------------------------------- partitions

    def _manifest(self, rel: str) -> dict[str, Any] | None:
        full = self.key(f"{rel}/{MANIFEST}")
        data = self._get(full)
        if data is None:
            return None
        try:
            manifest = json.loads(data)
            files = manifest["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise TypeError("files must be a list of names")
        except (ValueError, KeyError, TypeError) as e:
            raise LakeError(f"manifest s3://{self.bucket}/{full} is corrupt: {e}") from e
        return manifest

    def publish(self, rel: str, write_id: str, write: Callable[[Any], None]) -> int:
        sink = pa.BufferOutputStream()
        write(sink)
        body = sink.getvalue().to_pybytes()
        name = f"{WRITES}/{write_id}/{PART_FILE}"
        data_key = self.key(f"{rel}/{name}")
        with self._errors("writing", data_key):
            self.client.put_object(Bucket=self.bucket, Key=data_key, Body=body)
        previous = self._manifest(rel)
        manifest = {
            "format": 1,
            "write_id": write_id,
            "files": [name],
            "bytes": len(body),
            "written_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self._put_manifest(rel, manifest)
        keep = {write_id} | ({previous.get("write_id")} if previous else set())
        self._drop_writes(rel, keep)
        return len(body)

    def _put_manifest(self, rel: str, manifest: dict[str, Any]) -> None:
        """The commit point of a write: until this PUT lands, readers see the old partition."""
        full = self.key(f"{rel}/{MANIFEST}")
        with self._errors("publishing", full):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=json.dumps(manifest).encode())

    def _drop_writes(self, rel: str, keep: set[Any]) -> None:
        prefix = self.key(f"{rel}/{WRITES}/")
        stale = [k for k in self._list(prefix) if k[len(prefix) :].split("/")[0] not in keep]
        if stale:
            self._delete(stale)

    def partition_files(self, rel: str) -> list[str] | None:
        manifest = self._manifest(rel)
        if manifest is None:
            return None
        return [self.fs_path(f"{rel}/{name}") for name in manifest["files"]]

    def content_id(self, rel: str) -> str | None:
        """The write id the manifest names: readers read exactly that write's files."""
        manifest = self._manifest(rel)
        if manifest is None:
            return None
        write_id = manifest.get("write_id")
        if not isinstance(write_id, str) or not write_id:
            raise LakeError(f"manifest {self.uri(rel)}/{MANIFEST} names no write_id")
        return write_id

    def partition_metadata(self, rel: str) -> dict[bytes, bytes] | None:
        files = self.partition_files(rel)
        if not files:
            return None
        try:
            with self.filesystem.open_input_file(files[0]) as f:
                return dict(pq.read_metadata(f).metadata or {})
        except (OSError, pa.ArrowInvalid) as e:
            raise LakeError(f"cannot read the footer of s3://{files[0]}: {e}") from e

    def list_partitions(self, prefix: str, dataset: str, depth: int) -> Iterable[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        suffix = "/" + MANIFEST
        return [
            k[strip : -len(suffix)]
            for k in self._list(self.key(prefix) + "/")
            if k.endswith(suffix)
        ]

    def delete_partition(self, rel: str) -> None:
        if self._manifest(rel) is None:
            raise LakeError(f"partition {self.uri(rel)} does not exist")
        self._delete([self.key(f"{rel}/{MANIFEST}")])
        self._drop_writes(rel, keep=set())

    def gc(self, older_than_s: float) -> int:
        """Delete staged objects that no manifest names and that are older than the cutoff."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
        removed = 0
        with self._errors("listing", self.key("")):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key("")
            )
            objects = [o for page in pages for o in page.get("Contents", [])]
        marker = f"/{WRITES}/"
        named: set[str] = set()
        for obj in objects:
            if obj["Key"].endswith("/" + MANIFEST):
                rel_dir = obj["Key"][: -len(MANIFEST) - 1]
                data = self._get(obj["Key"]) or b"{}"
                write_id = json.loads(data).get("write_id")
                named.add(f"{rel_dir}{marker}{write_id}/")
        stale = [
            o["Key"]
            for o in objects
            if marker in o["Key"]
            and o["LastModified"] < cutoff
            and not any(o["Key"].startswith(n) for n in named)
        ]
        if stale:
            self._delete(stale)
            removed = len(stale)
        return removed
