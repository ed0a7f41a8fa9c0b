"""Storage backends of the lake: the interface (`Store`) and the local-folder backend (the S3 one
is exfm/s3.py). exfm/lake.py's docstring describes the layout and how writes are made atomic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from exfm.errors import LakeError

PART_FILE = "part.parquet"
STAGING = "_staging"
# Keys of the parquet footer metadata that every partition write adds (exfm/lake.py).
WRITE_ID_KEY = b"exfm.write_id"
CONTENT_SHA_KEY = b"exfm.content_sha256"


def new_write_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:10]}"


class Store:
    """What a lake backend provides (LocalStore here, S3Store in exfm/s3.py)."""

    filesystem: pafs.FileSystem

    def uri(self, rel: str) -> str: ...
    def fs_path(self, rel: str) -> str: ...
    def publish(self, rel: str, write_id: str, write: Any) -> int: ...
    def partition_files(self, rel: str) -> list[str] | None: ...
    def content_id(self, rel: str) -> str | None: ...
    def partition_metadata(self, rel: str) -> dict[bytes, bytes] | None: ...
    def list_partitions(self, prefix: str, dataset: str, depth: int) -> Iterable[str]: ...
    def delete_partition(self, rel: str) -> None: ...
    def gc(self, older_than_s: float) -> int: ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete_key(self, key: str) -> None: ...
    def list_keys(self, prefix: str) -> Iterable[str]: ...


class LocalStore(Store):
    """A lake on a local (or network-mounted POSIX) folder."""

    def __init__(self, root: str) -> None:
        self.base = Path(root)
        self.filesystem = pafs.LocalFileSystem()

    def uri(self, rel: str) -> str:
        return str(self.base / rel) if rel else str(self.base)

    def fs_path(self, rel: str) -> str:
        return str((self.base / rel).resolve())

    def _staging_dir(self, write_id: str) -> Path:
        path = self.base / STAGING / write_id
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise LakeError(f"cannot create staging folder {path}: {e}") from e
        return path

    def publish(self, rel: str, write_id: str, write: Any) -> int:
        staging = self._staging_dir(write_id)
        tmp = staging / PART_FILE
        final_dir = self.base / rel
        try:
            write(str(tmp))
            _fsync(tmp)
            final_dir.mkdir(parents=True, exist_ok=True)
            nbytes = tmp.stat().st_size
            os.replace(tmp, final_dir / PART_FILE)
            _fsync(final_dir)
            return nbytes
        except OSError as e:
            raise LakeError(f"writing {final_dir / PART_FILE} failed: {e}") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def partition_files(self, rel: str) -> list[str] | None:
        path = self.base / rel / PART_FILE
        return [str(path.resolve())] if path.is_file() else None

    def content_id(self, rel: str) -> str | None:
        """The write id in the part file's footer (None: no partition). A file that did not come
        through the lake (copied in by hand) has none: its sha256 stands in."""
        metadata = self.partition_metadata(rel)
        if metadata is None:
            return None
        write_id = metadata.get(WRITE_ID_KEY)
        if write_id:
            return write_id.decode()
        return file_sha256(self.base / rel / PART_FILE)

    def partition_metadata(self, rel: str) -> dict[bytes, bytes] | None:
        path = self.base / rel / PART_FILE
        try:
            return dict(pq.read_metadata(str(path)).metadata or {})
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowInvalid) as e:
            raise LakeError(f"cannot read the footer of {path}: {e}") from e

    def list_partitions(self, prefix: str, dataset: str, depth: int) -> Iterable[str]:
        start = self.base / prefix
        if not start.is_dir():
            return []
        levels = depth - (len(prefix.split("/")) - 1)
        pattern = "/".join(["*=*"] * levels + [PART_FILE])
        return [p.parent.relative_to(self.base).as_posix() for p in start.glob(pattern)]

    def delete_partition(self, rel: str) -> None:
        path = self.base / rel / PART_FILE
        if not path.exists():
            raise LakeError(f"partition {self.base / rel} does not exist")
        path.unlink()

    def gc(self, older_than_s: float) -> int:
        staging = self.base / STAGING
        if not staging.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in staging.iterdir():
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def put_bytes(self, key: str, data: bytes) -> str:
        final = self.base / key
        staging = self._staging_dir(new_write_id())
        try:
            tmp = staging / "object"
            tmp.write_bytes(data)
            _fsync(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except OSError as e:
            raise LakeError(f"writing {final} failed: {e}") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return str(final)

    def get_bytes(self, key: str) -> bytes:
        path = self.base / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise LakeError(f"{path} does not exist") from None
        except OSError as e:
            raise LakeError(f"cannot read {path}: {e}") from e

    def exists(self, key: str) -> bool:
        return (self.base / key).exists()

    def delete_key(self, key: str) -> None:
        try:
            (self.base / key).unlink(missing_ok=True)
        except OSError as e:
            raise LakeError(f"cannot delete {self.base / key}: {e}") from e

    def list_keys(self, prefix: str) -> Iterable[str]:
        top = self.base / prefix
        if not top.is_dir():
            return []
        return [p.relative_to(self.base).as_posix() for p in top.rglob("*") if p.is_file()]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise LakeError(f"cannot read {path}: {e}") from e
    return "sha256-" + digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
