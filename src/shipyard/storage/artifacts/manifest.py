"""File manifests: sha256 of every file of an artifact, and their verification before use."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from shipyard.errors import ArtifactCorrupted, InvalidInput
from shipyard.records import FileEntry

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(files: Iterable[FileEntry]) -> str:
    """sha256 over the sorted manifest: one name for the artifact as a whole."""
    canonical = [[f.path, f.sha256, f.size] for f in sorted(files, key=lambda f: f.path)]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def scan_dir(root: Path) -> tuple[FileEntry, ...]:
    """Hash every regular file below ``root`` (links are refused: they could escape the store)."""
    entries = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise InvalidInput(f"artifact contains a symbolic link: {path}", field="artifact")
        if path.is_file():
            entries.append(
                FileEntry(path.relative_to(root).as_posix(), sha256_file(path), path.stat().st_size)
            )
    return tuple(entries)


def verify_dir(root: Path, files: Iterable[FileEntry], *, what: str) -> None:
    """Raise :class:`ArtifactCorrupted` unless every file under ``root`` matches the manifest."""
    for entry in files:
        path = root / confined_relpath(entry.path)
        if not path.is_file():
            raise ArtifactCorrupted(f"{what}: file {entry.path!r} is missing from {root}")
        size = path.stat().st_size
        if size != entry.size or sha256_file(path) != entry.sha256:
            raise ArtifactCorrupted(
                f"{what}: file {entry.path!r} does not match its recorded sha256 "
                f"{entry.sha256[:12]}…; it was changed after it was stored, refusing to load it"
            )


def confined_relpath(path: str) -> PurePosixPath:
    """A relative POSIX path that cannot leave the directory it is joined to."""
    candidate = PurePosixPath(path.replace("\\", "/"))
    if candidate.is_absolute() or not candidate.parts or ".." in candidate.parts:
        raise InvalidInput(
            f"artifact path {path!r} must be relative and stay inside the store (no '..')",
            field="artifact_path",
        )
    return candidate
