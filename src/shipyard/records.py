"""Frozen records that cross layer boundaries: what the storage returns and the SDK hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class VersionStatus(StrEnum):
    READY = "ready"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of an artifact: its path relative to the artifact root, sha256 and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where an artifact lives and what its files must hash to."""

    key: str  # location inside the workspace's artifact store
    files: tuple[FileEntry, ...]
    digest: str  # sha256 over the manifest; names the artifact as a whole

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """A dataset a run used: a content fingerprint, its schema and row count."""

    name: str
    fingerprint: str
    schema: dict[str, str]
    num_rows: int


@dataclass(frozen=True, slots=True)
class RunArtifact:
    path: str
    key: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    experiment: str
    name: str | None
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    error: str | None
    user: str | None
    git_commit: str | None
    git_dirty: bool | None
    python_version: str
    packages: dict[str, str]
    seed: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value per key
    tags: dict[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetRecord, ...] = ()
    artifacts: tuple[RunArtifact, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    latest_version: int
    aliases: dict[str, int]
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    flavor: str
    flavor_options: dict[str, Any]
    signature: dict[str, Any]
    artifact: StoredArtifact
    run_id: str | None
    status: VersionStatus
    description: str | None
    created_at: datetime
    created_by: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """One change of an alias: ``version`` is None when the alias was removed."""

    name: str
    alias: str
    version: int | None
    previous_version: int | None
    action: str  # "set", "rollback" or "delete"
    actor: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Lineage:
    """How a model version was made: its run, with params, metrics, datasets and code version."""

    version: ModelVersion
    run: Run | None


@dataclass(frozen=True, slots=True)
class OptimizationResult:
    """A version converted to ONNX: where it came from, the new version, and how closely the new
    version's outputs match the source's over ``rows`` input rows."""

    source: str  # the source version's URI
    version: ModelVersion
    max_abs_diff: float
    mean_abs_diff: float
    rows: int
    tolerance: float


@dataclass(frozen=True, slots=True)
class FeatureDefinitionRecord:
    """One applied version of a feature definition (entity, view, on-demand view or service)."""

    kind: str
    name: str
    version: int
    spec: dict[str, Any]
    fingerprint: str
    breaking: bool
    repo_id: int | None
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class FeatureChange:
    """What ``features apply`` did to one definition: created, updated, breaking or unchanged."""

    kind: str
    name: str
    version: int
    action: str
    detail: str = ""
