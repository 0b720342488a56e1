"""Artifact stores: atomic, checksummed files and folders in a local folder or an S3 bucket."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from shipyard.errors import InvalidInput
from shipyard.records import StoredArtifact
from shipyard.storage.artifacts.local import LocalArtifactStore
from shipyard.storage.artifacts.s3 import S3ArtifactStore


class ArtifactStore(Protocol):
    """Where artifacts live. Keys are ``/``-separated paths the store confines to itself."""

    url: str

    def put(self, source: Path, key: str) -> StoredArtifact:
        """Store a file or a folder under ``key``, all-or-nothing; ``key`` must be new."""
        ...

    def local_path(self, artifact: StoredArtifact) -> Path:
        """A local folder holding the artifact's files, each verified against its sha256."""
        ...

    def list_keys(self, prefix: str) -> dict[str, datetime]:
        """The artifacts directly below ``prefix``, with the time each was last written."""
        ...

    def delete(self, key: str) -> None: ...


def open_artifact_store(
    url: str, *, cache_dir: Path, s3_endpoint_url: str | None = None
) -> ArtifactStore:
    """Pick the store for ``url``: a local path (or ``file://``) or ``s3://bucket/prefix``."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    match scheme:
        case "file":
            return LocalArtifactStore(Path(url.removeprefix("file://")))
        case "s3":
            return S3ArtifactStore(url, cache_dir=cache_dir, endpoint_url=s3_endpoint_url)
        case _:
            raise InvalidInput(
                f"artifact store URL scheme {scheme!r} is not supported; use a local path, "
                "file:///PATH or s3://BUCKET/PREFIX",
                field="SHIPYARD_ARTIFACTS_URL",
            )


__all__ = ["ArtifactStore", "LocalArtifactStore", "S3ArtifactStore", "open_artifact_store"]
