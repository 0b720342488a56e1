"""Registered models and their versions, aliases (with full history), tags and archive state.

Versions are allocated inside the transaction that inserts the version row, after the artifact is
fully stored under a fresh key: a crash leaves either a complete version or an unreferenced
artifact (removed by :meth:`Registry.collect_garbage`), never a gap, a duplicate or a row without
its files. Every write to a model first locks its ``registered_models`` row, so concurrent writers
(processes or replicas) serialise per model on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from shipyard.core.alias_history import rollback_target, version_at
from shipyard.core.identifiers import ModelRef, parse_model_uri, validate_alias, validate_name
from shipyard.errors import (
    AliasNotFound,
    Conflict,
    InvalidInput,
    ModelNotFound,
    NotFound,
    VersionNotFound,
)
from shipyard.records import (
    AliasEvent,
    FileEntry,
    ModelVersion,
    RegisteredModel,
    StoredArtifact,
    VersionStatus,
)
from shipyard.storage import schema
from shipyard.storage.artifacts import ArtifactStore
from shipyard.storage.database import Database

logger = logging.getLogger(__name__)

MODELS_PREFIX = "models"


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Reads and changes the registry; ``user`` is recorded as the actor of every change."""

    def __init__(self, database: Database, store: ArtifactStore, *, user: str | None) -> None:
        self.database = database
        self.store = store
        self.user = user

    # ----------------------------------------------------------------- versions
    def register(
        self,
        name: str,
        *,
        source: Path,
        flavor: str,
        flavor_options: Mapping[str, Any],
        signature: Mapping[str, Any],
        run_id: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Store the model folder ``source`` and record it as the next version of ``name``."""
        validate_name(name, what="model name")
        artifact = self.store.put(source, f"{MODELS_PREFIX}/{name}/{uuid.uuid4().hex}")
        now = _now()
        try:
            with self.database.write() as conn:
                _insert_model_if_missing(conn, self.database.dialect, name, now)
                version = conn.execute(
                    schema.registered_models.update()
                    .where(schema.registered_models.c.name == name)
                    .values(
                        last_version=schema.registered_models.c.last_version + 1, updated_at=now
                    )
                    .returning(schema.registered_models.c.last_version)
                ).scalar_one()
                conn.execute(
                    schema.model_versions.insert().values(
                        name=name,
                        version=version,
                        flavor=flavor,
                        flavor_options=dict(flavor_options),
                        signature=dict(signature),
                        artifact_key=artifact.key,
                        artifact_digest=artifact.digest,
                        artifact_files=[[f.path, f.sha256, f.size] for f in artifact.files],
                        run_id=run_id,
                        status=VersionStatus.READY.value,
                        description=description,
                        created_at=now,
                        created_by=self.user,
                    )
                )
                for key, value in (tags or {}).items():
                    conn.execute(
                        schema.version_tags.insert().values(
                            name=name, version=version, key=key, value=str(value)
                        )
                    )
        except BaseException:
            with contextlib.suppress(Exception):  # collect_garbage removes it if this fails too
                self.store.delete(artifact.key)
            raise
        logger.info("registered %s version %d (%s)", name, version, flavor)
        return self.get_version(name, version)

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self.database.read() as conn:
            return _load_version(conn, name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self.database.read() as conn:
            _require_model(conn, name)
            mv = schema.model_versions
            numbers = conn.execute(
                sa.select(mv.c.version).where(mv.c.name == name).order_by(mv.c.version)
            ).scalars()
            return [_load_version(conn, name, v) for v in numbers]

    def resolve(self, uri: str | ModelRef) -> ModelVersion:
        """The version a URI names: ``models:/churn/3``, ``models:/churn@production``…"""
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        with self.database.read() as conn:
            return _load_version(conn, ref.name, _resolve_number(conn, ref))

    def resolve_number(self, uri: str | ModelRef) -> int:
        """Only the version number a URI names: one indexed query, no artifact metadata."""
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        if ref.version is not None:
            return ref.version
        with self.database.read() as conn:
            return _resolve_number(conn, ref)

    def local_path(self, version: ModelVersion) -> Path:
        """A local folder with the version's files, each verified against its recorded sha256."""
        return self.store.local_path(version.artifact)

    # ------------------------------------------------------------ references
    def set_reference(self, version: ModelVersion, source: Path, *, rows: int) -> StoredArtifact:
        """Store a folder of reference data for ``version`` (it replaces, for readers, the one
        given at registration or set before; earlier ones stay for the record)."""
        artifact = self.store.put(
            source, f"references/{version.name}/{version.version}/{uuid.uuid4().hex}"
        )
        with self.database.write() as conn:
            conn.execute(
                sa.insert(schema.model_references).values(
                    name=version.name,
                    version=version.version,
                    artifact_key=artifact.key,
                    artifact_files=[
                        {"path": f.path, "sha256": f.sha256, "size": f.size} for f in artifact.files
                    ],
                    artifact_digest=artifact.digest,
                    rows=rows,
                    created_at=_now(),
                    created_by=self.user,
                )
            )
        logger.info("reference data of %s set (%d rows)", version.uri, rows)
        return artifact

    def reference_path(self, version: ModelVersion) -> Path | None:
        """The newest reference folder set for ``version`` after registration (verified), or
        None when none was set."""
        t = schema.model_references
        with self.database.read() as conn:
            row = conn.execute(
                sa.select(t)
                .where(t.c.name == version.name, t.c.version == version.version)
                .order_by(t.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        files = tuple(FileEntry(**f) for f in row.artifact_files)
        return self.store.local_path(StoredArtifact(row.artifact_key, files, row.artifact_digest))

    def archive(self, name: str, version: int, *, archived: bool = True) -> ModelVersion:
        """Archive a version (refused while an alias points at it), or restore it."""
        with self.database.write() as conn:
            _lock_model(conn, name)
            _load_version(conn, name, version)
            if archived:
                pointing = _aliases_of(conn, name, version)
                if pointing:
                    raise Conflict(
                        f"version {version} of model {name!r} cannot be archived while "
                        f"alias(es) {', '.join(pointing)} point at it; move them first"
                    )
            status = VersionStatus.ARCHIVED if archived else VersionStatus.READY
            mv = schema.model_versions
            conn.execute(
                mv.update()
                .where(mv.c.name == name, mv.c.version == version)
                .values(status=status.value)
            )
        logger.info("model %s version %d %s", name, version, status.value)
        return self.get_version(name, version)

    # ------------------------------------------------------------------ models
    def get_model(self, name: str) -> RegisteredModel:
        with self.database.read() as conn:
            return _load_model(conn, name)

    def list_models(self) -> list[RegisteredModel]:
        with self.database.read() as conn:
            names = conn.execute(
                sa.select(schema.registered_models.c.name).order_by(schema.registered_models.c.name)
            ).scalars()
            return [_load_model(conn, n) for n in names]

    def set_description(self, name: str, description: str, *, version: int | None = None) -> None:
        with self.database.write() as conn:
            _lock_model(conn, name)
            if version is None:
                table = schema.registered_models
                conn.execute(
                    table.update().where(table.c.name == name).values(description=description)
                )
            else:
                _load_version(conn, name, version)
                mv = schema.model_versions
                conn.execute(
                    mv.update()
                    .where(mv.c.name == name, mv.c.version == version)
                    .values(description=description)
                )

    def set_tag(self, name: str, key: str, value: str, *, version: int | None = None) -> None:
        """Set a tag on the model, or on one of its versions."""
        if not key or len(key) > 250:
            raise InvalidInput(f"tag name {key!r} must be 1-250 characters", field="key")
        with self.database.write() as conn:
            _lock_model(conn, name)
            if version is None:
                table: sa.Table = schema.model_tags
                match: Any = sa.and_(table.c.name == name, table.c.key == key)
                row: dict[str, Any] = {"name": name, "key": key, "value": str(value)}
            else:
                _load_version(conn, name, version)
                table = schema.version_tags
                match = sa.and_(
                    table.c.name == name, table.c.version == version, table.c.key == key
                )
                row = {"name": name, "version": version, "key": key, "value": str(value)}
            conn.execute(table.delete().where(match))
            conn.execute(table.insert().values(**row))

    # ----------------------------------------------------------------- aliases
    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str | None = None
    ) -> AliasEvent:
        """Point ``alias`` at ``version``; record who, when, why and what it pointed at before."""
        validate_alias(alias)
        return self._change_alias(name, alias, version, action="set", reason=reason)

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        return self._change_alias(name, alias, None, action="delete", reason=reason)

    def rollback(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        """Move ``alias`` back to the version it pointed at before its current assignment."""
        with self.database.write() as conn:
            _lock_model(conn, name)
            events = _alias_events(conn, name, alias)
            if not events:
                raise AliasNotFound(name, alias, _alias_map(conn, name))
            target = rollback_target(events)
            return self._move_alias(conn, name, alias, target, action="rollback", reason=reason)

    def _change_alias(
        self, name: str, alias: str, version: int | None, *, action: str, reason: str | None
    ) -> AliasEvent:
        with self.database.write() as conn:
            _lock_model(conn, name)
            return self._move_alias(conn, name, alias, version, action=action, reason=reason)

    def _move_alias(
        self,
        conn: Connection,
        name: str,
        alias: str,
        version: int | None,
        *,
        action: str,
        reason: str | None,
    ) -> AliasEvent:
        """Inside a write transaction holding the model's lock: move the alias, log the event."""
        now = _now()
        table = schema.aliases
        current = conn.execute(
            sa.select(table.c.version).where(table.c.name == name, table.c.alias == alias)
        ).scalar()
        if version is None:
            if current is None:
                raise AliasNotFound(name, alias, _alias_map(conn, name))
            conn.execute(table.delete().where(table.c.name == name, table.c.alias == alias))
        else:
            target = _load_version(conn, name, version)
            if target.status is VersionStatus.ARCHIVED:
                raise Conflict(
                    f"version {version} of model {name!r} is archived; restore it before "
                    f"pointing alias {alias!r} at it"
                )
            if current is None:
                conn.execute(table.insert().values(name=name, alias=alias, version=version))
            else:
                conn.execute(
                    table.update()
                    .where(table.c.name == name, table.c.alias == alias)
                    .values(version=version)
                )
        event = AliasEvent(name, alias, version, current, action, self.user, reason, now)
        conn.execute(
            schema.alias_events.insert().values(
                name=name,
                alias=alias,
                version=version,
                previous_version=current,
                action=action,
                actor=self.user,
                reason=reason,
                at=now,
            )
        )
        logger.info("alias %s@%s moved %s -> %s (%s)", name, alias, current, version, action)
        return event

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every change of ``alias`` (or of all the model's aliases), oldest first."""
        with self.database.read() as conn:
            _require_model(conn, name)
            return _alias_events(conn, name, alias)

    def alias_version_at(self, name: str, alias: str, at: datetime) -> int | None:
        """Which version ``alias`` pointed at, at time ``at`` (None if it was unset)."""
        if at.tzinfo is None:
            raise InvalidInput(
                "time must carry a timezone (e.g. 2026-03-03T12:00:00+00:00)", field="at"
            )
        return version_at(self.alias_history(name, alias), at)

    # ------------------------------------------------------------- maintenance
    def collect_garbage(self, *, grace: timedelta = timedelta(hours=1)) -> list[str]:
        """Delete stored model folders no version refers to (left by crashes), older than ``grace``.

        Returns the deleted keys. The grace period protects registrations still in progress.
        """
        with self.database.read() as conn:
            referenced = set(
                conn.execute(sa.select(schema.model_versions.c.artifact_key)).scalars()
            )
        cutoff = _now() - grace
        deleted = []
        for model_prefix in self.store.list_keys(MODELS_PREFIX):
            for key, modified in self.store.list_keys(model_prefix).items():
                if key not in referenced and modified < cutoff:
                    self.store.delete(key)
                    deleted.append(key)
        if deleted:
            logger.info("removed %d unreferenced model artifact(s)", len(deleted))
        return deleted


# ---------------------------------------------------------------------- queries
def _insert_model_if_missing(conn: Connection, dialect: str, name: str, now: datetime) -> None:
    values = {"name": name, "created_at": now, "updated_at": now, "last_version": 0}
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    conn.execute(insert(schema.registered_models).values(**values).on_conflict_do_nothing())


def _known_models(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(schema.registered_models.c.name)).scalars())


def _require_model(conn: Connection, name: str) -> None:
    table = schema.registered_models
    if conn.execute(sa.select(table.c.name).where(table.c.name == name)).first() is None:
        raise ModelNotFound(name, _known_models(conn))


def _lock_model(conn: Connection, name: str) -> None:
    """Take the model's row lock (PostgreSQL) inside a write transaction, or fail if unknown."""
    table = schema.registered_models
    found = conn.execute(
        sa.select(table.c.name).where(table.c.name == name).with_for_update()
    ).first()
    if found is None:
        raise ModelNotFound(name, _known_models(conn))


def _alias_map(conn: Connection, name: str) -> dict[str, int]:
    table = schema.aliases
    rows = conn.execute(sa.select(table.c.alias, table.c.version).where(table.c.name == name))
    return {alias: int(version) for alias, version in rows}


def _aliases_of(conn: Connection, name: str, version: int) -> list[str]:
    return sorted(a for a, v in _alias_map(conn, name).items() if v == version)


def _resolve_number(conn: Connection, ref: ModelRef) -> int:
    mv = schema.model_versions
    if ref.version is not None:
        return ref.version
    if ref.alias is not None:
        table = schema.aliases
        found = conn.execute(
            sa.select(table.c.version).where(table.c.name == ref.name, table.c.alias == ref.alias)
        ).scalar()
        if found is None:
            _require_model(conn, ref.name)
            raise AliasNotFound(ref.name, ref.alias, _alias_map(conn, ref.name))
        return int(found)
    latest = conn.execute(
        sa.select(sa.func.max(mv.c.version)).where(
            mv.c.name == ref.name, mv.c.status == VersionStatus.READY.value
        )
    ).scalar()
    if latest is None:
        _require_model(conn, ref.name)
        raise NotFound(f"model {ref.name!r} has no version that is not archived")
    return int(latest)


def _load_model(conn: Connection, name: str) -> RegisteredModel:
    table = schema.registered_models
    row = conn.execute(sa.select(table).where(table.c.name == name)).first()
    if row is None:
        raise ModelNotFound(name, _known_models(conn))
    tags = schema.model_tags
    return RegisteredModel(
        name=row.name,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        latest_version=int(row.last_version),
        aliases=_alias_map(conn, name),
        tags=dict(
            conn.execute(sa.select(tags.c.key, tags.c.value).where(tags.c.name == name)).all()
        ),
    )


def _load_version(conn: Connection, name: str, version: int) -> ModelVersion:
    mv = schema.model_versions
    row = conn.execute(sa.select(mv).where(mv.c.name == name, mv.c.version == version)).first()
    if row is None:
        _require_model(conn, name)
        known = conn.execute(sa.select(mv.c.version).where(mv.c.name == name)).scalars()
        raise VersionNotFound(name, version, known)
    tags = schema.version_tags
    files = tuple(FileEntry(path, sha, int(size)) for path, sha, size in row.artifact_files)
    return ModelVersion(
        name=row.name,
        version=int(row.version),
        flavor=row.flavor,
        flavor_options=dict(row.flavor_options),
        signature=dict(row.signature),
        artifact=StoredArtifact(row.artifact_key, files, row.artifact_digest),
        run_id=row.run_id,
        status=VersionStatus(row.status),
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        tags=dict(
            conn.execute(
                sa.select(tags.c.key, tags.c.value).where(
                    tags.c.name == name, tags.c.version == version
                )
            ).all()
        ),
        aliases=tuple(_aliases_of(conn, name, version)),
    )


def _alias_events(conn: Connection, name: str, alias: str | None) -> list[AliasEvent]:
    table = schema.alias_events
    query = sa.select(table).where(table.c.name == name).order_by(table.c.id)
    if alias is not None:
        query = query.where(table.c.alias == alias)
    return [
        AliasEvent(
            r.name, r.alias, r.version, r.previous_version, r.action, r.actor, r.reason, r.at
        )
        for r in conn.execute(query)
    ]
