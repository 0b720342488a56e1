"""Artifacts in an S3 bucket (any S3 API) through s3fs, with a verified local cache for loading.

``put`` uploads every file under a new key and returns only when all uploads have completed, so a
metadata row that names the artifact is written after the objects exist. ``local_path`` downloads
into ``cache_dir`` (to a temporary folder, renamed into place once verified) and verifies the cached
files against their sha256 on every call.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    StorageUnavailable,
    require_package,
)
from shipyard.records import StoredArtifact
from shipyard.storage.artifacts.local import copy_hashed
from shipyard.storage.artifacts.manifest import confined_relpath, manifest_digest, verify_dir


class S3ArtifactStore:
    """``s3://bucket/prefix``; ``endpoint_url`` selects a non-AWS S3 API (MinIO, moto, Ceph…)."""

    def __init__(self, url: str, *, cache_dir: Path, endpoint_url: str | None = None) -> None:
        s3fs = require_package("s3fs", "s3")
        bucket_and_prefix = url.removeprefix("s3://").strip("/")
        if not bucket_and_prefix:
            raise InvalidInput(f"S3 URL {url!r} names no bucket", field="SHIPYARD_ARTIFACTS_URL")
        self.url = f"s3://{bucket_and_prefix}"
        self._root = bucket_and_prefix
        self._cache = cache_dir
        client_kwargs = {"endpoint_url": endpoint_url} if endpoint_url else {}
        self._fs: Any = s3fs.S3FileSystem(client_kwargs=client_kwargs, use_listings_cache=False)

    def _path(self, key: str) -> str:
        return f"{self._root}/{confined_relpath(key).as_posix()}"

    def put(self, source: Path, key: str) -> StoredArtifact:
        remote = self._path(key)
        staging = self._cache / "staging" / uuid.uuid4().hex
        try:
            if self._fs.exists(remote):
                raise Conflict(f"artifact {key!r} already exists in {self.url}")
            files = copy_hashed(source, staging)
            for entry in files:
                self._fs.put_file(str(staging / entry.path), f"{remote}/{entry.path}")
        except OSError as exc:
            raise StorageUnavailable(f"uploading {key!r} to {self.url} failed: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return StoredArtifact(key=key, files=files, digest=manifest_digest(files))

    def local_path(self, artifact: StoredArtifact) -> Path:
        what = f"artifact {artifact.key!r} in {self.url}"
        cached = self._cache / "artifacts" / artifact.digest
        if not cached.exists():
            temp = self._cache / "artifacts" / f".tmp-{uuid.uuid4().hex}"
            try:
                for entry in artifact.files:
                    target = temp / confined_relpath(entry.path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._fs.get_file(f"{self._path(artifact.key)}/{entry.path}", str(target))
                verify_dir(temp, artifact.files, what=what)
                try:
                    temp.rename(cached)
                except OSError:  # another process cached it first
                    if not cached.exists():
                        raise
            except FileNotFoundError as exc:
                raise NotFound(f"{what}: a file is missing from the bucket ({exc})") from exc
            except OSError as exc:
                raise StorageUnavailable(f"downloading {what} failed: {exc}") from exc
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        verify_dir(cached, artifact.files, what=what)
        return cached

    def list_keys(self, prefix: str) -> dict[str, datetime]:
        remote = self._path(prefix)
        if not self._fs.exists(remote):
            return {}
        found: dict[str, datetime] = {}
        for info in self._fs.find(remote, withdirs=False, detail=True).values():
            relative = str(info["name"]).removeprefix(remote + "/")
            child = f"{prefix.rstrip('/')}/{relative.split('/', 1)[0]}"
            modified = info.get("LastModified") or datetime.now(UTC)
            found[child] = max(found.get(child, modified), modified)
        return found

    def delete(self, key: str) -> None:
        remote = self._path(key)
        if not self._fs.exists(remote):
            raise NotFound(f"artifact {key!r} not found in {self.url}")
        self._fs.rm(remote, recursive=True)
