"""Artifacts in a local folder: copied to a temporary folder, fsynced, then renamed into place."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.records import FileEntry, StoredArtifact
from shipyard.storage.artifacts.manifest import (
    confined_relpath,
    manifest_digest,
    sha256_file,
    verify_dir,
)

TEMP_PREFIX = ".tmp-"


class LocalArtifactStore:
    """A folder on this machine. ``put`` is atomic: readers see the whole artifact or nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.url = str(self.root)

    def path_of(self, key: str) -> Path:
        """The folder for ``key``, which must stay inside the store."""
        path = self.root / confined_relpath(key)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidInput(f"artifact key {key!r} leaves the store", field="artifact_path")
        return path

    def put(self, source: Path, key: str) -> StoredArtifact:
        dest = self.path_of(key)
        if dest.exists():
            raise Conflict(f"artifact {key!r} already exists in {self.url}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            files = copy_hashed(source, temp)
            _fsync_dir(temp)
            temp.rename(dest)
            _fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return StoredArtifact(key=key, files=files, digest=manifest_digest(files))

    def local_path(self, artifact: StoredArtifact) -> Path:
        path = self.path_of(artifact.key)
        verify_dir(path, artifact.files, what=f"artifact {artifact.key!r}")
        return path

    def list_keys(self, prefix: str) -> dict[str, datetime]:
        folder = self.path_of(prefix)
        if not folder.is_dir():
            return {}
        return {
            f"{prefix.rstrip('/')}/{child.name}": datetime.fromtimestamp(
                child.stat().st_mtime, tz=UTC
            )
            for child in folder.iterdir()
        }

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        if not path.exists():
            raise NotFound(f"artifact {key!r} not found in {self.url}")
        shutil.rmtree(path)


def copy_hashed(source: Path, dest: Path) -> tuple[FileEntry, ...]:
    """Copy a file (into ``dest/``) or a folder's contents (as ``dest/``), hashing and fsyncing."""
    if source.is_symlink() or not source.exists():
        raise InvalidInput(
            f"artifact source {source} must be an existing file or folder", field="path"
        )
    pairs = (
        [(source, source.name)]
        if source.is_file()
        else [
            (p, p.relative_to(source).as_posix()) for p in sorted(source.rglob("*")) if p.is_file()
        ]
    )
    dest.mkdir(parents=True)
    entries = []
    for path, relative in pairs:
        if path.is_symlink():
            raise InvalidInput(f"artifact contains a symbolic link: {path}", field="path")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        with target.open("rb+") as handle:
            os.fsync(handle.fileno())
        entries.append(FileEntry(relative, sha256_file(target), target.stat().st_size))
    return tuple(entries)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
