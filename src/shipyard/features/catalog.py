"""Applied feature definitions in the metadata database: versioned specs, their code, watermarks.

``apply`` stores each definition's JSON spec as a new version when it changed. A change that
would break a consumer of the previous version — a removed feature, a changed dtype, different
join keys — is refused unless the caller asks for a new version explicitly (``new_version=True``);
the version is then marked ``breaking``. Everything in one ``apply`` is written in one
transaction, or nothing is. The Python file the definitions came from is stored as an artifact
(sha256-verified on load), so a server in another process can run the same on-demand transforms.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.core.profile import Profile
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.features.definitions import (
    Definition,
    Entity,
    FeatureSelection,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    OnDemandSelection,
)
from shipyard.records import FeatureChange, FeatureDefinitionRecord, FileEntry, StoredArtifact
from shipyard.storage import schema
from shipyard.storage.artifacts import ArtifactStore
from shipyard.storage.database import Database

logger = logging.getLogger(__name__)

KINDS = ("entity", "feature_view", "on_demand_feature_view", "feature_service")
REPO_FILE = "features.py"


def _now() -> datetime:
    return datetime.now(UTC)


def spec_fingerprint(spec: dict[str, Any]) -> str:
    """sha256 of a spec's canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def kind_of(definition: Definition) -> str:
    match definition:
        case Entity():
            return "entity"
        case FeatureView():
            return "feature_view"
        case OnDemandFeatureView():
            return "on_demand_feature_view"
        case FeatureService():
            return "feature_service"
    raise InvalidInput(f"{definition!r} is not a feature definition", field="definitions")


def closure(definitions: Iterable[Definition]) -> list[Definition]:
    """The definitions plus everything they refer to (a view's entities, a service's views…)."""
    out: dict[tuple[str, str], Definition] = {}

    def add(item: Definition) -> None:
        key = (kind_of(item), item.name)
        known = out.get(key)
        if known is not None:
            if known is not item and known.spec() != item.spec():
                raise InvalidInput(
                    f"two different {key[0].replace('_', ' ')}s are named {item.name!r}",
                    field="definitions",
                )
            return
        out[key] = item
        if isinstance(item, FeatureView):
            for entity in item.entities:
                add(entity)
        elif isinstance(item, OnDemandFeatureView):
            for source in item.sources:
                if isinstance(source, FeatureView):
                    add(source)
                elif isinstance(source, FeatureSelection):
                    add(source.view)
        elif isinstance(item, FeatureService):
            for entry in item.items:
                if isinstance(entry, (FeatureSelection, OnDemandSelection)):
                    add(entry.view)
                else:
                    add(entry)

    for definition in definitions:
        add(definition)
    return list(out.values())


def breaking_changes(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` cannot replace ``old`` for existing consumers (empty when it can)."""
    reasons: list[str] = []
    if kind == "entity" and old["join_keys"] != new["join_keys"]:
        reasons.append(f"join keys change from {old['join_keys']} to {new['join_keys']}")
    if kind in ("feature_view", "on_demand_feature_view"):
        before = {f["name"]: f["dtype"] for f in old["features"]}
        after = {f["name"]: f["dtype"] for f in new["features"]}
        for name, dtype in before.items():
            if name not in after:
                reasons.append(f"feature {name!r} is removed")
            elif after[name] != dtype:
                reasons.append(f"feature {name!r} changes dtype from {dtype} to {after[name]}")
    if kind == "feature_view":
        keys_before = [k for e in old["entities"] for k in e["join_keys"]]
        keys_after = [k for e in new["entities"] for k in e["join_keys"]]
        if keys_before != keys_after:
            reasons.append(f"join keys change from {keys_before} to {keys_after}")
    return reasons


class FeatureCatalog:
    """Reads and changes the applied feature definitions; ``user`` is recorded on every change."""

    def __init__(self, database: Database, store: ArtifactStore, *, user: str | None) -> None:
        self.database = database
        self.store = store
        self.user = user

    def apply(
        self,
        definitions: Sequence[Definition],
        *,
        code: Path | None = None,
        new_version: bool = False,
    ) -> list[FeatureChange]:
        """Store what changed as new versions; refuse breaking changes unless ``new_version``."""
        items = closure(definitions)
        if not items:
            raise InvalidInput("there are no feature definitions to apply", field="definitions")
        planned: list[tuple[Definition, dict[str, Any], str, FeatureChange]] = []
        refused: list[str] = []
        with self.database.read() as conn:
            for item in items:
                kind = kind_of(item)
                spec = item.spec()
                fingerprint = spec_fingerprint(spec)
                latest = self._latest(conn, kind, item.name)
                if latest is None:
                    change = FeatureChange(kind, item.name, 1, "created")
                elif latest.fingerprint == fingerprint:
                    change = FeatureChange(kind, item.name, latest.version, "unchanged")
                else:
                    reasons = breaking_changes(kind, latest.spec, spec)
                    detail = "; ".join(reasons)
                    if reasons and not new_version:
                        refused.append(f"{kind.replace('_', ' ')} {item.name!r}: {detail}")
                    action = "breaking" if reasons else "updated"
                    change = FeatureChange(kind, item.name, latest.version + 1, action, detail)
                planned.append((item, spec, fingerprint, change))
        if refused:
            raise Conflict(
                "incompatible changes: "
                + " | ".join(refused)
                + " — apply them as a new version explicitly (new_version=True, or "
                "`shipyard features apply --new-version`)"
            )
        writes = [p for p in planned if p[3].action != "unchanged"]
        if writes:
            repo = self._put_code(code) if code is not None else None
            now = _now()
            with self.database.write() as conn:
                repo_id = None
                if repo is not None:
                    inserted = conn.execute(
                        sa.insert(schema.feature_repos).values(
                            artifact_key=repo.key,
                            artifact_files=[
                                {"path": f.path, "sha256": f.sha256, "size": f.size}
                                for f in repo.files
                            ],
                            artifact_digest=repo.digest,
                            created_at=now,
                            created_by=self.user,
                        )
                    )
                    repo_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                for _, spec, fingerprint, change in writes:
                    current = self._latest(conn, change.kind, change.name)
                    expected = 0 if current is None else current.version
                    if expected + 1 != change.version:
                        raise Conflict(
                            f"{change.kind.replace('_', ' ')} {change.name!r} was changed by "
                            "someone else while applying; apply again"
                        )
                    conn.execute(
                        sa.insert(schema.feature_definitions).values(
                            kind=change.kind,
                            name=change.name,
                            version=change.version,
                            spec=spec,
                            fingerprint=fingerprint,
                            breaking=change.action == "breaking",
                            repo_id=repo_id,
                            created_at=now,
                            created_by=self.user,
                        )
                    )
            for _, _, _, change in writes:
                logger.info(
                    "feature definition %s %s: version %d %s",
                    change.kind,
                    change.name,
                    change.version,
                    change.action,
                )
        return [p[3] for p in planned]

    def _put_code(self, code: Path) -> StoredArtifact:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / REPO_FILE).write_bytes(code.read_bytes())
            digest = hashlib.sha256(code.read_bytes()).hexdigest()
            return self.store.put(folder, f"features/{digest[:16]}-{_now():%Y%m%d%H%M%S%f}")

    # ------------------------------------------------------------------ reads
    def _latest(self, conn: Connection, kind: str, name: str) -> FeatureDefinitionRecord | None:
        t = schema.feature_definitions
        row = conn.execute(
            sa.select(t)
            .where(t.c.kind == kind, t.c.name == name)
            .order_by(t.c.version.desc())
            .limit(1)
        ).first()
        return None if row is None else _record(row)

    def list_definitions(self, kind: str | None = None) -> list[FeatureDefinitionRecord]:
        """The latest version of every definition (of one kind when given), by kind and name."""
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"kind {kind!r} is not one of {', '.join(KINDS)}", field="kind")
        t = schema.feature_definitions
        newest = (
            sa.select(t.c.kind, t.c.name, sa.func.max(t.c.version).label("version"))
            .group_by(t.c.kind, t.c.name)
            .subquery()
        )
        query = sa.select(t).join(
            newest,
            sa.and_(
                t.c.kind == newest.c.kind,
                t.c.name == newest.c.name,
                t.c.version == newest.c.version,
            ),
        )
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self.database.read() as conn:
            rows = conn.execute(query.order_by(t.c.kind, t.c.name)).all()
        return [_record(r) for r in rows]

    def find_definition(
        self, name: str, *, kind: str | None = None
    ) -> list[FeatureDefinitionRecord]:
        """Every applied version of definitions named ``name``, newest first."""
        t = schema.feature_definitions
        query = sa.select(t).where(t.c.name == name)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        with self.database.read() as conn:
            rows = conn.execute(query.order_by(t.c.kind, t.c.version.desc())).all()
        return [_record(r) for r in rows]

    def get_definition(
        self, kind: str, name: str, version: int | None = None
    ) -> FeatureDefinitionRecord:
        """One version (the latest when ``version`` is None), or NotFound naming what exists."""
        t = schema.feature_definitions
        query = sa.select(t).where(t.c.kind == kind, t.c.name == name)
        if version is not None:
            query = query.where(t.c.version == version)
        with self.database.read() as conn:
            row = conn.execute(query.order_by(t.c.version.desc()).limit(1)).first()
        if row is None:
            label = kind.replace("_", " ")
            what = f"{label} {name!r}" + ("" if version is None else f" version {version}")
            known = [r.name for r in self.list_definitions(kind)]
            raise NotFound(
                f"{what} is not applied; "
                + (f"known: {', '.join(known)}" if known else f"no {label}s are applied yet")
            )
        return _record(row)

    def latest_code(self) -> Path | None:
        """The newest applied definitions file, verified against its sha256; None if none."""
        t = schema.feature_repos
        with self.database.read() as conn:
            row = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        artifact = StoredArtifact(
            key=row.artifact_key,
            files=tuple(FileEntry(**f) for f in row.artifact_files),
            digest=row.artifact_digest,
        )
        return self.store.local_path(artifact) / REPO_FILE

    # ------------------------------------------------------------- watermarks
    def watermark(self, view: str, version: int) -> datetime | None:
        """Up to when ``view`` (this version) is materialised; None before the first run."""
        t = schema.feature_watermarks
        with self.database.read() as conn:
            value = conn.execute(
                sa.select(t.c.watermark).where(t.c.view == view, t.c.version == version)
            ).scalar()
        assert value is None or isinstance(value, datetime)
        return value

    def advance_watermark(self, view: str, version: int, watermark: datetime, rows: int) -> None:
        """Record that ``view`` is materialised up to ``watermark`` (never moves it backwards)."""
        t = schema.feature_watermarks
        now = _now()
        with self.database.write() as conn:
            current = conn.execute(
                sa.select(t.c.watermark, t.c.rows_written).where(
                    t.c.view == view, t.c.version == version
                )
            ).first()
            if current is None:
                conn.execute(
                    sa.insert(t).values(
                        view=view,
                        version=version,
                        watermark=watermark,
                        rows_written=rows,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    sa.update(t)
                    .where(t.c.view == view, t.c.version == version)
                    .values(
                        watermark=max(current.watermark, watermark),
                        rows_written=current.rows_written + rows,
                        updated_at=now,
                    )
                )

    # -------------------------------------------------------------- profiles
    def reference_profile(self, view: str, version: int) -> Profile | None:
        """The profile new data of ``view`` (this version) is validated against; None if unset."""
        t = schema.feature_profiles
        with self.database.read() as conn:
            data = conn.execute(
                sa.select(t.c.profile).where(t.c.view == view, t.c.version == version)
            ).scalar()
        return None if data is None else Profile.from_dict(data)

    def set_reference_profile(self, view: str, version: int, profile: Profile) -> None:
        """Make ``profile`` the reference of ``view`` (this version), replacing any other."""
        t = schema.feature_profiles
        with self.database.write() as conn:
            conn.execute(sa.delete(t).where(t.c.view == view, t.c.version == version))
            conn.execute(
                sa.insert(t).values(
                    view=view, version=version, profile=profile.to_dict(), created_at=_now()
                )
            )


def _record(row: Any) -> FeatureDefinitionRecord:
    return FeatureDefinitionRecord(
        kind=row.kind,
        name=row.name,
        version=row.version,
        spec=row.spec,
        fingerprint=row.fingerprint,
        breaking=row.breaking,
        repo_id=row.repo_id,
        created_at=row.created_at,
        created_by=row.created_by,
    )
