"""Runs: a record of one training attempt, written to the metadata DB as it happens."""

from __future__ import annotations

import logging
import math
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.core.fingerprint import describe_dataset
from shipyard.core.identifiers import validate_name
from shipyard.errors import Conflict, InvalidInput, RunNotFound
from shipyard.records import DatasetRecord, Run, RunArtifact, RunStatus
from shipyard.storage import schema
from shipyard.storage.artifacts import ArtifactStore
from shipyard.storage.artifacts.manifest import confined_relpath
from shipyard.storage.database import Database
from shipyard.tracking import environment
from shipyard.tracking.seeding import last_seed

logger = logging.getLogger(__name__)

_MAX_KEY = 250


def _now() -> datetime:
    return datetime.now(UTC)


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise InvalidInput(f"{what} {key!r} must be a non-empty string of at most 250 characters")
    return key


class Tracker:
    """Creates runs and reads them back."""

    def __init__(self, database: Database, store: ArtifactStore, *, user: str | None) -> None:
        self.database = database
        self.store = store
        self.user = user

    def start_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        code_dir: Path | None = None,
    ) -> ActiveRun:
        validate_name(experiment, what="experiment")
        commit, dirty = environment.git_state(code_dir or environment.caller_directory())
        run_id = uuid.uuid4().hex
        with self.database.write() as conn:
            experiment_id = _ensure_experiment(conn, experiment)
            conn.execute(
                schema.runs.insert().values(
                    run_id=run_id,
                    experiment_id=experiment_id,
                    name=name,
                    status=RunStatus.RUNNING.value,
                    start_time=_now(),
                    user=self.user,
                    git_commit=commit,
                    git_dirty=dirty,
                    python_version=environment.python_version(),
                    packages=environment.package_versions(),
                    seed=last_seed(),
                )
            )
        run = ActiveRun(self, run_id)
        if tags:
            run.set_tags(tags)
        logger.info("run %s started in experiment %s", run_id, experiment)
        return run

    def get_run(self, run_id: str) -> Run:
        with self.database.read() as conn:
            return _load_run(conn, run_id)

    def list_runs(self, experiment: str | None = None, *, limit: int = 100) -> list[Run]:
        query = (
            sa.select(schema.runs.c.run_id)
            .join(schema.experiments)
            .order_by(schema.runs.c.start_time.desc())
            .limit(limit)
        )
        if experiment is not None:
            query = query.where(schema.experiments.c.name == experiment)
        with self.database.read() as conn:
            ids = conn.execute(query).scalars().all()
            return [_load_run(conn, run_id) for run_id in ids]

    def list_experiments(self) -> list[str]:
        with self.database.read() as conn:
            query = sa.select(schema.experiments.c.name).order_by(schema.experiments.c.name)
            return list(conn.execute(query).scalars())


class ActiveRun:
    """A run in progress. As a context manager it ends ``finished`` or ``failed``."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self._tracker = tracker
        self.run_id = run_id
        self._ended = False

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end()
        else:
            self.end(error=f"{type(exc).__name__}: {exc}")

    @property
    def info(self) -> Run:
        return self._tracker.get_run(self.run_id)

    def _write(self) -> Any:
        if self._ended:
            raise Conflict(f"run {self.run_id} has ended; start a new run to log more")
        return self._tracker.database.write()

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; a parameter keeps its first value (changing it is an error)."""
        values = {_check_key(k, "param name"): str(v) for k, v in params.items()}
        table = schema.run_params
        with self._write() as conn:
            existing = dict(
                conn.execute(
                    sa.select(table.c.key, table.c.value).where(
                        table.c.run_id == self.run_id, table.c.key.in_(values)
                    )
                ).all()
            )
            for key, value in values.items():
                if key in existing and existing[key] != value:
                    raise Conflict(
                        f"param {key!r} of run {self.run_id} is {existing[key]!r}; "
                        f"it cannot change to {value!r}"
                    )
            new = [
                {"run_id": self.run_id, "key": k, "value": v}
                for k, v in values.items()
                if k not in existing
            ]
            if new:
                conn.execute(table.insert(), new)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Record metric values at ``step`` (history is kept; the latest step is the summary)."""
        if not isinstance(step, int) or isinstance(step, bool):
            raise InvalidInput(f"step must be an integer, got {step!r}", field="step")
        rows = []
        timestamp = _now()
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"metric {key!r} must be a number, got {value!r}", field=key
                ) from exc
            if math.isinf(number):
                raise InvalidInput(f"metric {key!r} is infinite", field=key)
            rows.append(
                {
                    "run_id": self.run_id,
                    "key": _check_key(key, "metric name"),
                    "value": number,
                    "step": step,
                    "timestamp": timestamp,
                }
            )
        with self._write() as conn:
            conn.execute(schema.run_metrics.insert(), rows)

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        table = schema.run_tags
        with self._write() as conn:
            for key, value in tags.items():
                conn.execute(
                    table.delete().where(table.c.run_id == self.run_id, table.c.key == key)
                )
                conn.execute(
                    table.insert().values(
                        run_id=self.run_id, key=_check_key(key, "tag name"), value=str(value)
                    )
                )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> RunArtifact:
        """Store a file or folder with the run (atomically, with sha256) as ``artifact_path``."""
        source = Path(path)
        relative = confined_relpath(artifact_path or source.name).as_posix()
        if self._ended:
            raise Conflict(f"run {self.run_id} has ended; start a new run to log more")
        stored = self._tracker.store.put(source, f"runs/{self.run_id}/{relative}")
        record = RunArtifact(relative, stored.key, stored.digest, stored.size)
        with self._write() as conn:
            conn.execute(
                schema.run_artifacts.insert().values(
                    run_id=self.run_id,
                    path=relative,
                    key=stored.key,
                    sha256=stored.digest,
                    size=stored.size,
                )
            )
        return record

    def log_text(self, text: str, artifact_path: str) -> RunArtifact:
        """Store ``text`` as a file named by the last part of ``artifact_path``."""
        relative = confined_relpath(artifact_path)
        with tempfile.TemporaryDirectory() as folder:
            file = Path(folder) / relative.name
            file.write_text(text, encoding="utf-8")
            return self.log_artifact(file, relative.as_posix())

    def log_dataset(self, data: Any, name: str) -> DatasetRecord:
        """Record a dataset's content fingerprint, schema and row count (not its rows)."""
        _check_key(name, "dataset name")
        fingerprint, columns, num_rows = describe_dataset(data)
        record = DatasetRecord(name, fingerprint, columns, num_rows)
        table = schema.run_datasets
        with self._write() as conn:
            conn.execute(table.delete().where(table.c.run_id == self.run_id, table.c.name == name))
            conn.execute(
                table.insert().values(
                    run_id=self.run_id,
                    name=name,
                    fingerprint=record.fingerprint,
                    schema=record.schema,
                    num_rows=record.num_rows,
                )
            )
        return record

    def end(self, *, error: str | None = None) -> None:
        """Mark the run finished, or failed with ``error``. Ending twice is a no-op.

        The seed recorded is the latest given to ``seed_everything``, before or during the run.
        """
        if self._ended:
            return
        status = RunStatus.FAILED if error is not None else RunStatus.FINISHED
        with self._tracker.database.write() as conn:
            conn.execute(
                schema.runs.update()
                .where(schema.runs.c.run_id == self.run_id)
                .values(status=status.value, end_time=_now(), error=error, seed=last_seed())
            )
        self._ended = True
        logger.info("run %s %s", self.run_id, status.value)


def _ensure_experiment(conn: Connection, name: str) -> int:
    table = schema.experiments
    found = conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            table.insert().values(name=name, created_at=_now()).returning(table.c.id)
        ).scalar_one()
    )


def _load_run(conn: Connection, run_id: str) -> Run:
    runs, experiments = schema.runs, schema.experiments
    row = (
        conn.execute(
            sa.select(runs, experiments.c.name.label("experiment"))
            .join(experiments)
            .where(runs.c.run_id == run_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise RunNotFound(run_id)

    def pairs(table: sa.Table) -> dict[str, str]:
        query = sa.select(table.c.key, table.c.value).where(table.c.run_id == run_id)
        return {str(k): str(v) for k, v in conn.execute(query)}

    m = schema.run_metrics
    latest = sa.select(m.c.key, m.c.value).where(m.c.run_id == run_id).order_by(m.c.step, m.c.id)
    metrics = {k: float(v) for k, v in conn.execute(latest).all()}
    d = schema.run_datasets
    datasets = tuple(
        DatasetRecord(r.name, r.fingerprint, dict(r.schema), int(r.num_rows))
        for r in conn.execute(sa.select(d).where(d.c.run_id == run_id).order_by(d.c.name))
    )
    a = schema.run_artifacts
    artifacts = tuple(
        RunArtifact(r.path, r.key, r.sha256, int(r.size))
        for r in conn.execute(sa.select(a).where(a.c.run_id == run_id).order_by(a.c.path))
    )
    return Run(
        run_id=row["run_id"],
        experiment=row["experiment"],
        name=row["name"],
        status=RunStatus(row["status"]),
        start_time=row["start_time"],
        end_time=row["end_time"],
        error=row["error"],
        user=row["user"],
        git_commit=row["git_commit"],
        git_dirty=row["git_dirty"],
        python_version=row["python_version"],
        packages=dict(row["packages"]),
        seed=row["seed"],
        params=pairs(schema.run_params),
        metrics=metrics,
        tags=pairs(schema.run_tags),
        datasets=datasets,
        artifacts=artifacts,
    )
