"""Feature store benchmark: shipyard against Feast, in one run, on the same generated data.

The data has the shape of the Feast measurement in issue 4: 10,000 entities x 720 hourly events x 5
float features (7.2M rows, with an event and a created timestamp) in one Parquet file, a
100,000-row spine of random entities at random times in that range, and a feature view with a TTL
of 2 hours. Everything is drawn from one seed, so every run sees the same rows. Three tasks, each
side by side:

- **historical retrieval** (a point-in-time join of the spine): Feast with its default file
  offline store (Dask), Feast with its DuckDB offline store, and shipyard
  (``shipyard.features.offline.get_historical_features``). Each runs once in a process of its own,
  so wall time and peak RSS (the process's high-water mark, reset just before the call) are its
  own. Each answer is checked against a reference computed here with ``pandas.merge_asof``: spine
  rows dropped (and, of those, duplicates collapsed), rows whose values differ, whether the spine
  order is kept;
- **materialisation** of the newest value of the 10,000 entities into an online store (Feast
  ``materialize`` with each offline store; shipyard ``FeatureStore.materialize``), into SQLite and
  into Redis; every entity is then read back and checked;
- **online lookup**: ``get_online_features`` for 1 entity x 5 features and for 100 entities,
  p50/p99 over many calls, the two libraries alternating in blocks in one process so that the
  drift of a shared machine hits both alike. Reads are made as of one hour after the last event
  (shipyard's clock is set to it; Feast's online store ignores the TTL): values older than the TTL
  that a store still serves are counted.

The data, built so that the point-in-time rules matter on real rows:

- entity ``e``, hour ``h``: one event at ``T0 + h hours + U[0, 3600) s``, created 1-599 s later;
- 2% of the events (hour > 0) are *corrections*: they take the event time of the same entity's
  previous event, with a later created time, so the two tie and the correction must win; the hour
  they leave empty opens a gap that is longer than the TTL about half the time;
- the spine: 99% random (entity, second) pairs, 1% exact copies of other spine rows.

Run by hand with the Feast benchmark environment (see ``benchmarks/README.md``)::

    benchmarks/setup-feast-env                          # once: creates .venv-feast
    .venv-feast/bin/python benchmarks/features.py       # everything, several minutes
    .venv-feast/bin/python benchmarks/features.py --skip-feast --only historical

Redis is the server at ``--redis-url`` (default ``redis://127.0.0.1:6379/13``); both libraries
delete what they wrote there at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=2)
FEATURES = ("f0", "f1", "f2", "f3", "f4")
VIEW = "stats"
REFS = [f"{VIEW}:{name}" for name in FEATURES]
JOIN_KEY = "entity_id"
TS = "event_timestamp"
CREATED = "created"
CORRECTION_RATE = (
    0.02  # share of events that re-state the previous event (same time, later created)
)
DUPLICATE_SPINE_RATE = 0.01
LOOKUP_DELAY = timedelta(hours=1)  # online reads happen this long after the last event
ROUNDS = 10  # online timings: rounds of one block per library
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TASKS = ("historical", "materialize", "online")
HISTORICAL_ENGINES = ("shipyard", "feast-duckdb", "feast-file")
ONLINE_STORES = ("sqlite", "redis")
LEGEND = (
    "Ratios are the other library's time / shipyard's time: above 1, shipyard is faster. "
    "Historical rows: wall time and the process's peak RSS during the call, one run each in a "
    "fresh process; materialise: wall time of one run; online: p50 and p99 per call."
)


@dataclass(frozen=True, slots=True)
class Shape:
    entities: int
    hours: int
    spine_rows: int

    @property
    def end(self) -> datetime:
        return T0 + timedelta(hours=self.hours)


@dataclass(frozen=True, slots=True)
class Paths:
    """Files the parent writes and every child reads; ``out`` holds the children's answers."""

    root: Path

    @property
    def events(self) -> Path:
        return self.root / "events.parquet"

    @property
    def spine(self) -> Path:
        return self.root / "spine.parquet"

    @property
    def reference(self) -> Path:
        return self.root / "reference.parquet"

    @property
    def latest(self) -> Path:
        return self.root / "latest.parquet"

    @property
    def out(self) -> Path:
        return self.root / "out"


# ------------------------------------------------------------------------------------------ data
def generate(shape: Shape, paths: Paths) -> dict[str, int]:
    """Write the events and the spine (see the module docstring); returns what was made."""
    rng = np.random.default_rng(SEED)
    e, h = shape.entities, shape.hours
    n = e * h
    hour = np.repeat(np.arange(h, dtype=np.int64), e)  # rows in arrival order: hour, then entity
    entity = np.tile(np.arange(e, dtype=np.int64), h)
    event_s = hour * 3600 + rng.integers(0, 3600, n)
    created_s = event_s + rng.integers(1, 600, n)
    values = rng.standard_normal((n, len(FEATURES)))
    corrected = (rng.random(n) < CORRECTION_RATE) & (hour > 0)
    extra_delay = rng.integers(1, 600, n)
    # Hour by hour, so that a correction of a correction ties with the final time before it.
    for hour_index in range(1, h):
        rows = slice(hour_index * e, (hour_index + 1) * e)
        previous = slice((hour_index - 1) * e, hour_index * e)
        mask = corrected[rows]
        event_s[rows][mask] = event_s[previous][mask]
        created_s[rows][mask] = created_s[previous][mask] + extra_delay[rows][mask]
    t0_us = int(T0.timestamp()) * 1_000_000
    utc_us = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        JOIN_KEY: pa.array(entity),
        TS: pa.array(t0_us + event_s * 1_000_000, type=pa.int64()).cast(utc_us),
        CREATED: pa.array(t0_us + created_s * 1_000_000, type=pa.int64()).cast(utc_us),
    }
    for j, name in enumerate(FEATURES):
        columns[name] = pa.array(values[:, j])
    pq.write_table(pa.table(columns), paths.events)
    del columns, values, event_s, created_s, hour, entity

    duplicates = round(shape.spine_rows * DUPLICATE_SPINE_RATE)
    unique = shape.spine_rows - duplicates
    spine_entity = rng.integers(0, e, unique)
    spine_s = rng.integers(0, h * 3600, unique)
    copies = rng.integers(0, unique, duplicates)
    order = rng.permutation(shape.spine_rows)
    spine_entity = np.concatenate([spine_entity, spine_entity[copies]])[order]
    spine_s = np.concatenate([spine_s, spine_s[copies]])[order]
    spine = pa.table(
        {
            JOIN_KEY: pa.array(spine_entity),
            TS: pa.array(t0_us + spine_s * 1_000_000, type=pa.int64()).cast(utc_us),
        }
    )
    pq.write_table(spine, paths.spine)
    return {
        "events": n,
        "corrections": int(corrected.sum()),
        "spine_rows": shape.spine_rows,
        "spine_duplicates": duplicates,
    }


def micros(series: pd.Series) -> np.ndarray:
    """Timestamps (naive = UTC, or aware) as int64 microseconds since the epoch."""
    stamps = pd.to_datetime(series, utc=True)
    return np.asarray((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1))


def read_spine(paths: Paths) -> pd.DataFrame:
    return pd.read_parquet(paths.spine)


# ------------------------------------------------------------------------------- measurement
def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ≥ 4.0), so a peak is the call's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def proc_status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Stats:
    n: int
    p50_ns: float
    p99_ns: float
    mean_ns: float

    @classmethod
    def of(cls, samples: Sequence[int]) -> Stats:
        values = np.asarray(samples, dtype=np.float64)
        p50, p99 = np.percentile(values, [50, 99])
        return cls(len(values), float(p50), float(p99), float(values.mean()))


def time_alternating(
    calls: Sequence[Callable[[int], object]], *, n: int, warmup: int
) -> list[Stats]:
    """Time ``call(i)``, i < n, in ``ROUNDS`` rounds of a block per call (drift hits all alike)."""
    for call in calls:
        for i in range(warmup):
            call(i)
    block = max(1, n // ROUNDS)
    samples: list[list[int]] = [[] for _ in calls]
    for round_ in range(ROUNDS):
        for j, call in enumerate(calls):
            for i in range(round_ * block, (round_ + 1) * block):
                start = time.perf_counter_ns()
                call(i)
                samples[j].append(time.perf_counter_ns() - start)
    return [Stats.of(s) for s in samples]


# --------------------------------------------------------------------------- children: data
def child_reference(paths: Paths, params: Mapping[str, Any]) -> dict[str, Any]:
    """The expected answers: a backward as-of join with pandas, and the newest row per entity."""
    events = pd.read_parquet(paths.events)
    events["_ts"] = micros(events[TS])
    events["_created"] = micros(events[CREATED])
    events = events.drop(columns=[TS, CREATED])
    # Ties on event time: the latest created wins, so keep only that row per (entity, time).
    events = events.sort_values(["_ts", "_created"], kind="stable")
    latest = events.drop_duplicates([JOIN_KEY], keep="last").sort_values(JOIN_KEY)
    latest[[JOIN_KEY, "_ts", *FEATURES]].rename(columns={"_ts": "event_us"}).to_parquet(
        paths.latest, index=False
    )
    events["_tie"] = events.duplicated([JOIN_KEY, "_ts"], keep=False)
    events = events.drop_duplicates([JOIN_KEY, "_ts"], keep="last")
    spine = read_spine(paths)
    spine["_ts"] = micros(spine[TS])
    spine["_row"] = np.arange(len(spine))
    joined = pd.merge_asof(
        spine.sort_values("_ts", kind="stable"),
        events[[JOIN_KEY, "_ts", "_tie", *FEATURES]].rename(columns={"_ts": "_event"}),
        left_on="_ts",
        right_on="_event",
        by=JOIN_KEY,
        direction="backward",
        allow_exact_matches=True,
    ).sort_values("_row")
    ttl_us = int(TTL.total_seconds() * 1_000_000)
    stale = (joined["_ts"] - joined["_event"]).to_numpy() > ttl_us  # NaN (no event) compares False
    unmatched = stale | joined["_event"].isna().to_numpy()
    joined.loc[unmatched, list(FEATURES)] = np.nan
    decided_by_tie = ~unmatched & joined["_tie"].fillna(False).to_numpy(dtype=bool)
    reference = pd.DataFrame(
        {JOIN_KEY: joined[JOIN_KEY].to_numpy(), "_ts": joined["_ts"].to_numpy()}
    )
    for name in FEATURES:
        reference[name] = joined[name].to_numpy()
    reference["_tie"] = decided_by_tie
    reference.to_parquet(paths.reference, index=False)
    return {
        "spine_rows_without_event_in_ttl": int(unmatched.sum()),
        "spine_rows_decided_by_a_tie": int(decided_by_tie.sum()),
    }


# --------------------------------------------------------------------- children: historical
def feast_objects(paths: Paths) -> tuple[Any, Any]:
    """Feast's entity and feature view over the same Parquet file (same TTL, same tie-break)."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    entity = Entity(name="entity", join_keys=[JOIN_KEY], value_type=ValueType.INT64)
    source = FileSource(
        path=str(paths.events), timestamp_field=TS, created_timestamp_column=CREATED
    )
    view = FeatureView(
        name=VIEW,
        entities=[entity],
        ttl=TTL,
        schema=[Field(name=name, dtype=Float64) for name in FEATURES],
        source=source,
        online=True,
    )
    return entity, view


def feast_store(paths: Paths, name: str, offline: str, online: Mapping[str, Any]) -> Any:
    """A Feast store configured in code (as a ``feature_store.yaml`` would), definitions applied."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    repo = paths.root / f"feast-{name}"
    repo.mkdir(exist_ok=True)
    config = RepoConfig(
        project=f"bench_{name.replace('-', '_')}",
        provider="local",
        registry=str(repo / "registry.db"),
        repo_path=repo,
        offline_store={"type": offline},
        online_store=dict(online),
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    store.apply(list(feast_objects(paths)))
    return store


def shipyard_view(paths: Paths) -> Any:
    from shipyard.features.definitions import Entity, FeatureView, Field, ParquetSource

    return FeatureView(
        VIEW,
        entities=[Entity("entity", [JOIN_KEY])],
        features=[Field(name, "float64") for name in FEATURES],
        source=ParquetSource(str(paths.events)),
        timestamp_field=TS,
        created_timestamp_field=CREATED,
        ttl=TTL,
    )


def child_historical(paths: Paths, params: Mapping[str, Any]) -> dict[str, Any]:
    engine = params["engine"]
    spine = read_spine(paths)
    retrieve: Callable[[], pd.DataFrame]
    if engine == "shipyard":
        try:
            from shipyard.features.offline import get_historical_features
        except ModuleNotFoundError as error:
            return {"status": f"not available yet ({error})"}
        views = {VIEW: shipyard_view(paths)}

        def retrieve() -> pd.DataFrame:
            return get_historical_features(spine, REFS, views).to_pandas()

    else:
        offline = engine.removeprefix("feast-")
        store = feast_store(
            paths, engine, offline, {"type": "sqlite", "path": str(paths.root / f"{engine}.db")}
        )

        def retrieve() -> pd.DataFrame:
            return store.get_historical_features(entity_df=spine, features=REFS).to_df()

    rss_before = proc_status_kib("VmRSS")
    peak_reset = reset_peak_rss()
    start = time.perf_counter()
    answer = retrieve()
    wall_s = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")
    out = pd.DataFrame({JOIN_KEY: answer[JOIN_KEY].to_numpy(), "_ts": micros(answer[TS])})
    for name in FEATURES:
        out[name] = answer[name].to_numpy(dtype=np.float64, na_value=np.nan)
    out.to_parquet(paths.out / f"historical-{engine}.parquet", index=False)
    return {
        "status": "ok",
        "wall_s": wall_s,
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "peak_is_call_only": peak_reset,
        "rows": len(answer),
    }


# ------------------------------------------------------------------ children: online stores
def feast_online_config(store: str, paths: Paths, name: str, redis_url: str) -> dict[str, Any]:
    if store == "sqlite":
        return {"type": "sqlite", "path": str(paths.root / f"online-{name}.db")}
    url = urlparse(redis_url)
    db = (url.path or "/0").lstrip("/") or "0"
    return {"type": "redis", "connection_string": f"{url.hostname}:{url.port or 6379},db={db}"}


def open_shipyard_store(home: Path, online_url: str, now: datetime) -> Any:
    """HOOK (the lead's facade): shipyard's FeatureStore on a fresh workspace in ``home``.

    Raises ModuleNotFoundError while ``shipyard.features.store`` (or what it imports) is missing;
    the caller then reports "not available yet". Reads are made as of ``now``.
    """
    from shipyard import Settings, Workspace

    workspace = Workspace(Settings(home=home, online_store_url=online_url))
    store = workspace.features
    store.clock = lambda: now
    return workspace, store


Reader = Callable[[list[int]], tuple[dict[str, list[Any]], list[bool]]]


def check_online(read: Reader, latest: pd.DataFrame, now: datetime) -> dict[str, int]:
    """Read every entity back (100 at a time) and compare with the newest event per entity.

    ``read`` returns the values by feature and, per entity, whether the store called it present.
    An entity whose newest event is older than the TTL at ``now`` should not be served.
    """
    ids = latest[JOIN_KEY].to_numpy()
    expected = latest[list(FEATURES)].to_numpy()
    now_us = int(now.timestamp() * 1_000_000)
    stale = (now_us - latest["event_us"].to_numpy()) > TTL.total_seconds() * 1_000_000
    wrong = missing = stale_served = 0
    for offset in range(0, len(ids), 100):
        batch = [int(i) for i in ids[offset : offset + 100]]
        values, present = read(batch)
        got = np.array(
            [[np.nan if v is None else v for v in values[name]] for name in FEATURES], dtype=float
        ).T
        for k in range(len(batch)):
            row = offset + k
            if stale[row]:
                stale_served += int(present[k])
                continue
            if not present[k] or np.isnan(got[k]).all():
                missing += 1
            elif not np.array_equal(got[k], expected[row], equal_nan=True):
                wrong += 1
    return {
        "entities": len(ids),
        "stale_entities": int(stale.sum()),
        "stale_served": stale_served,
        "missing": missing,
        "wrong": wrong,
    }


def child_online(paths: Paths, params: Mapping[str, Any]) -> dict[str, Any]:
    """Materialise with each library into one kind of online store, check, then time lookups."""
    store_kind = params["store"]
    shape = Shape(**params["shape"])
    start, end = T0 - timedelta(days=1), shape.end + timedelta(hours=1)
    now = shape.end + LOOKUP_DELAY
    latest = pd.read_parquet(paths.latest)
    result: dict[str, Any] = {"materialize": {}, "check": {}, "online": {}}
    readers: dict[str, Callable[[list[dict[str, int]]], object]] = {}
    cleanups: list[Callable[[], object]] = []
    try:
        if not params["skip_feast"]:
            for offline in ("file", "duckdb"):
                name = f"feast-{offline}-{store_kind}"
                config = feast_online_config(store_kind, paths, name, params["redis_url"])
                feast = feast_store(paths, name, offline, config)
                cleanups.append(feast.teardown)
                began = time.perf_counter()
                feast.materialize(start_date=start, end_date=end)
                result["materialize"][f"feast-{offline}"] = {"wall_s": time.perf_counter() - began}
                result["check"][f"feast-{offline}"] = check_online(feast_reader(feast), latest, now)
                if offline == "file":  # the default; its store is the one timed below
                    readers["feast"] = lambda rows, feast=feast: feast.get_online_features(
                        features=REFS, entity_rows=rows
                    ).to_dict()
        try:
            online_url = (
                f"sqlite:///{paths.root / f'shipyard-{store_kind}' / 'online.db'}"
                if store_kind == "sqlite"
                else params["redis_url"]
            )
            workspace, ours = open_shipyard_store(
                paths.root / f"shipyard-{store_kind}", online_url, now
            )
        except ModuleNotFoundError as error:
            result["shipyard"] = f"not available yet ({error})"
        else:
            try:
                cleanups.append(workspace.close)
                ours.apply([shipyard_view(paths)])
                cleanups.append(lambda: delete_shipyard_rows(ours))
                began = time.perf_counter()
                ours.materialize(start, end)
                result["materialize"]["shipyard"] = {"wall_s": time.perf_counter() - began}
                result["check"]["shipyard"] = check_online(shipyard_reader(ours), latest, now)
                readers["shipyard"] = lambda rows: ours.get_online_features(REFS, rows).to_dict()
                if params["time_online"]:  # the storage layer alone: helper B's benchmark function
                    from online_store import measure_online_store

                    calls = int(params["online_calls"])
                    figures = measure_online_store(
                        ours.online,
                        backend=store_kind,
                        entities=shape.entities,
                        single_reads=calls,
                        batch_reads=calls // 4,
                        write_repeats=1,
                    )
                    result["raw_store"] = {**asdict(figures), "reads": [calls, calls // 4]}
            except Exception as error:  # a broken shipyard side must not lose Feast's figures
                traceback.print_exc()
                result["shipyard"] = f"failed: {type(error).__name__}: {error}"
                readers.pop("shipyard", None)

        if params["time_online"] and readers:
            rng = np.random.default_rng(SEED + 1)
            calls = int(params["online_calls"])
            ids = rng.integers(0, shape.entities, (calls + calls // 10, 100))
            one = [[{JOIN_KEY: int(row[0])}] for row in ids]
            many = [[{JOIN_KEY: int(v)} for v in row] for row in ids]
            names = list(readers)
            for label, rows, n in (("1 entity", one, calls), ("100 entities", many, calls // 4)):
                stats = time_alternating(
                    [lambda i, read=readers[k], rows=rows: read(rows[i]) for k in names],
                    n=n,
                    warmup=max(5, n // 20),
                )
                result["online"][label] = {k: asdict(s) for k, s in zip(names, stats, strict=True)}
    finally:
        for cleanup in reversed(cleanups):  # Redis is shared: leave nothing behind
            cleanup()
    return result


def feast_reader(feast: Any) -> Reader:
    """Values by feature, and per entity whether Feast returned any value (it has no status)."""

    def read(ids: list[int]) -> tuple[dict[str, list[Any]], list[bool]]:
        answer = feast.get_online_features(
            features=REFS, entity_rows=[{JOIN_KEY: i} for i in ids]
        ).to_dict()
        present = [any(answer[n][k] is not None for n in FEATURES) for k in range(len(ids))]
        return {n: answer[n] for n in FEATURES}, present

    return read


def shipyard_reader(store: Any) -> Reader:
    def read(ids: list[int]) -> tuple[dict[str, list[Any]], list[bool]]:
        answer = store.get_online_features(REFS, {JOIN_KEY: ids})
        present = [
            any(answer.statuses[n][k] == "PRESENT" for n in FEATURES) for k in range(len(ids))
        ]
        return {n: answer.values[n] for n in FEATURES}, present

    return read


def delete_shipyard_rows(store: Any) -> None:
    from shipyard.features.online import namespace

    version = store.catalog.get_definition("feature_view", VIEW).version
    store.online.delete_view(namespace(VIEW, version))


CHILDREN: dict[str, Callable[[Paths, Mapping[str, Any]], dict[str, Any]]] = {
    "reference": child_reference,
    "historical": child_historical,
    "online": child_online,
}


def run_child(role: str, paths: Paths, params: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``role`` in a fresh interpreter; its answer is the JSON it writes."""
    tag = "-".join([role, *(str(v) for k, v in params.items() if k in ("engine", "store"))])
    result_file = paths.out / f"{tag}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        role,
        "--work",
        str(paths.root),
        "--params",
        json.dumps(params),
        "--result",
        str(result_file),
    ]
    print(f"  running {tag} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    (paths.out / f"{tag}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not result_file.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
        return {"status": f"failed (exit {done.returncode})", "error": "\n".join(tail[-3:])}
    answer: dict[str, Any] = json.loads(result_file.read_text())
    print(f"  {tag}: done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return answer


def child_main(role: str, work: Path, params: Mapping[str, Any], result: Path) -> None:
    os.environ.setdefault("FEAST_USAGE", "False")
    try:
        answer = CHILDREN[role](Paths(work), params)
    except Exception as error:  # the parent shows why, the other cells still run
        traceback.print_exc()
        answer = {"status": f"failed: {type(error).__name__}: {error}"}
    result.write_text(json.dumps(answer))


# ------------------------------------------------------------------------------ comparison
@dataclass(slots=True)
class Check:
    rows: int
    dropped: int = 0
    dropped_without_event: int = 0  # spine rows whose true answer is all-null (no event in TTL)
    collapsed_duplicates: int = 0
    extra: int = 0
    values_differ: int = 0
    values_differ_at_ties: int | None = None  # of those, rows whose answer is decided by a tie
    order_kept: bool = False
    differ_from_shipyard: int | None = None
    notes: list[str] = field(default_factory=list)


def compare(answer: pd.DataFrame, expected: pd.DataFrame) -> Check:
    """Match rows on (entity, spine time); duplicates of a key must all carry its values."""
    keys = [JOIN_KEY, "_ts"]
    check = Check(rows=len(answer))
    check.order_kept = len(answer) == len(expected) and bool(
        np.array_equal(answer[JOIN_KEY].to_numpy(), expected[JOIN_KEY].to_numpy())
        and np.array_equal(answer["_ts"].to_numpy(), expected["_ts"].to_numpy())
    )
    ties = {"_tie": ("_tie", "max")} if "_tie" in expected else {}
    want = expected.groupby(keys, sort=False).agg(
        want=(JOIN_KEY, "size"), **{f"x_{n}": (n, "first") for n in FEATURES}, **ties
    )
    got = answer.groupby(keys, sort=False).size().rename("got")
    counts = want.join(got, how="outer").fillna({"want": 0, "got": 0})
    short = (counts["want"] - counts["got"]).clip(lower=0)
    check.dropped = int(short.sum())
    check.extra = int((counts["got"] - counts["want"]).clip(lower=0).sum())
    no_event = counts[[f"x_{n}" for n in FEATURES]].isna().all(axis=1)
    check.dropped_without_event = int(short[no_event].sum())
    collapsed = (counts["want"] > 1) & (counts["got"] >= 1) & (counts["got"] < counts["want"])
    check.collapsed_duplicates = int(short[collapsed].sum())
    matched = answer.merge(want.reset_index(), on=keys, how="inner")
    differ = np.zeros(len(matched), dtype=bool)
    for name in FEATURES:
        a, b = matched[name].to_numpy(), matched[f"x_{name}"].to_numpy()
        differ |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    check.values_differ = int(differ.sum())
    if ties:
        check.values_differ_at_ties = int((differ & matched["_tie"].to_numpy(dtype=bool)).sum())
    return check


# ----------------------------------------------------------------------------------- report
def format_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def format_gib(kib: int) -> str:
    return f"{kib / 2**20:.2f} GiB" if kib >= 2**19 else f"{kib / 2**10:.0f} MiB"


def ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None or ours <= 0:
        return "—"
    return f"{theirs / ours:.1f}×" if theirs / ours >= 10 else f"{theirs / ours:.2f}×"


LABELS = {
    "shipyard": "shipyard",
    "feast-duckdb": "Feast, DuckDB offline store",
    "feast-file": "Feast, file offline store (default)",
    "feast": "Feast",
}


def historical_rows(results: Mapping[str, Any], shape: Shape) -> list[list[str]]:
    ours = results.get("shipyard", {})
    rows = []
    for engine in HISTORICAL_ENGINES:
        r = results.get(engine)
        if r is None:
            continue
        if r.get("status") != "ok":
            rows.append(
                [
                    "historical",
                    LABELS[engine],
                    "",
                    f"{shape.spine_rows:,}",
                    r["status"],
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        c = r["check"]
        notes = [f"{c['rows']:,} rows out"]
        if c["dropped"]:
            notes.append(
                f"{c['dropped']:,} spine rows dropped ({c['dropped_without_event']:,} with no "
                f"event in the TTL window, {c['collapsed_duplicates']:,} duplicates collapsed)"
            )
        if c["extra"]:
            notes.append(f"{c['extra']:,} extra rows")
        differ = f"{c['values_differ']:,} rows with values ≠ reference"
        if c["values_differ"] and c.get("values_differ_at_ties") is not None:
            differ += f" ({c['values_differ_at_ties']:,} where the answer is decided by a tie)"
        notes.append(differ)
        if c.get("differ_from_shipyard") is not None:
            notes.append(f"{c['differ_from_shipyard']:,} ≠ shipyard")
        notes.append("order kept" if c["order_kept"] else "order not kept")
        rows.append(
            [
                "historical",
                LABELS[engine],
                "",
                f"{shape.spine_rows:,}",
                format_s(r["wall_s"]),
                "",
                format_gib(r["peak_rss_kib"]),
                "—" if engine == "shipyard" else ratio(r["wall_s"], ours.get("wall_s")),
                "—" if engine == "shipyard" else ratio(r["peak_rss_kib"], ours.get("peak_rss_kib")),
                "; ".join(notes),
            ]
        )
    return rows


def online_store_rows(store: str, r: Mapping[str, Any], shape: Shape) -> list[list[str]]:
    rows: list[list[str]] = []
    if "status" in r:
        return [["materialise", "—", store, "", r["status"], "", "", "", "", ""]]
    mat, checks = r["materialize"], r["check"]
    ours = mat.get("shipyard", {}).get("wall_s")
    for lib in ("shipyard", "feast-duckdb", "feast-file"):
        if lib not in mat:
            if lib == "shipyard" and "shipyard" in r:
                rows.append(
                    ["materialise", "shipyard", store, "", r["shipyard"], "", "", "", "", ""]
                )
            continue
        c = checks.get(lib)
        note = (
            r.get("shipyard", "")
            if c is None
            else (
                f"{c['entities'] - c['missing'] - c['wrong'] - c['stale_entities']:,} correct, "
                f"{c['wrong']:,} wrong, {c['missing']:,} missing; "
                f"{c['stale_served']:,} of {c['stale_entities']:,} values older than the TTL served"
            )
        )
        rows.append(
            [
                "materialise",
                LABELS[lib],
                store,
                f"{shape.entities:,}",
                format_s(mat[lib]["wall_s"]),
                "",
                "",
                "—" if lib == "shipyard" else ratio(mat[lib]["wall_s"], ours),
                "",
                note,
            ]
        )
    for label, by_lib in r["online"].items():
        ours_stats = by_lib.get("shipyard")
        for lib, s in sorted(by_lib.items(), key=lambda kv: kv[0] != "shipyard"):
            rows.append(
                [
                    f"online, {label} × {len(FEATURES)} features",
                    "shipyard" if lib == "shipyard" else "Feast (file offline store materialised)",
                    store,
                    f"{s['n']:,}",
                    format_s(s["p50_ns"] / 1e9),
                    format_s(s["p99_ns"] / 1e9),
                    "",
                    "—"
                    if lib == "shipyard" or not ours_stats
                    else ratio(s["p50_ns"], ours_stats["p50_ns"]),
                    "—"
                    if lib == "shipyard" or not ours_stats
                    else ratio(s["p99_ns"], ours_stats["p99_ns"]),
                    "p50 / p99 per call",
                ]
            )
    raw = r.get("raw_store")
    if raw:
        for label, n, p50, p99 in (
            ("1 entity", raw["reads"][0], raw["read_1_p50_ms"], raw["read_1_p99_ms"]),
            ("100 entities", raw["reads"][1], raw["read_100_p50_ms"], raw["read_100_p99_ms"]),
        ):
            rows.append(
                [
                    f"online, {label}: storage layer only",
                    "shipyard OnlineStore.read",
                    store,
                    f"{n:,}",
                    format_s(p50 / 1e3),
                    format_s(p99 / 1e3),
                    "",
                    "",
                    "",
                    "benchmarks/online_store.py: no feature layer (keys, statuses, TTL)",
                ]
            )
    return rows


def markdown(rows: Sequence[Sequence[str]]) -> str:
    header = [
        "task",
        "library",
        "online store",
        "n",
        "time (wall or p50)",
        "p99",
        "peak RSS",
        "ratio time",
        "ratio p99 / RSS",
        "checks",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("shipyard", "feast", "duckdb", "pandas", "pyarrow", "numpy", "dask", "redis"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def redis_reachable(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    try:
        import redis
    except ModuleNotFoundError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis not reachable at {url}: {error}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=720)
    parser.add_argument("--spine-rows", type=int, default=100_000)
    parser.add_argument("--skip-feast", action="store_true", help="shipyard only (quick runs)")
    parser.add_argument("--only", choices=TASKS, help="run one task")
    parser.add_argument(
        "--online-calls",
        type=int,
        default=2000,
        help="calls per library for 1 entity (a quarter of it for 100)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--params", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.work, args.params, args.result)
        return

    shape = Shape(args.entities, args.hours, args.spine_rows)
    tasks = [args.only] if args.only else list(TASKS)
    command = " ".join(
        [".venv-feast/bin/python", "benchmarks/features.py", *map(shlex.quote, sys.argv[1:])]
    )
    folder = tempfile.mkdtemp(prefix="shipyard-bench-features-")
    paths = Paths(Path(folder))
    paths.out.mkdir()
    began = time.perf_counter()
    print(f"generating data in {folder} ...", file=sys.stderr, flush=True)
    made = generate(shape, paths)
    print(f"  {made} in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    made.update(run_child("reference", paths, {}))
    rows: list[list[str]] = []
    raw: dict[str, Any] = {"data": made}

    if "historical" in tasks:
        expected = pd.read_parquet(paths.reference)
        historical: dict[str, Any] = {}
        for engine in HISTORICAL_ENGINES:
            if args.skip_feast and engine != "shipyard":
                continue
            r = run_child("historical", paths, {"engine": engine})
            if r.get("status") == "ok":
                answer = pd.read_parquet(paths.out / f"historical-{engine}.parquet")
                r["check"] = asdict(compare(answer, expected))
            historical[engine] = r
        ours_file = paths.out / "historical-shipyard.parquet"
        if ours_file.exists():
            ours = pd.read_parquet(ours_file)
            for engine, r in historical.items():
                if engine != "shipyard" and r.get("status") == "ok":
                    answer = pd.read_parquet(paths.out / f"historical-{engine}.parquet")
                    r["check"]["differ_from_shipyard"] = compare(answer, ours).values_differ
        raw["historical"] = historical
        rows += historical_rows(historical, shape)

    if "materialize" in tasks or "online" in tasks:
        raw["online_stores"] = {}
        for store in ONLINE_STORES:
            problem = redis_reachable(args.redis_url) if store == "redis" else None
            r = (
                {"status": problem}
                if problem
                else run_child(
                    "online",
                    paths,
                    {
                        "store": store,
                        "shape": asdict(shape),
                        "skip_feast": args.skip_feast,
                        "redis_url": args.redis_url,
                        "time_online": "online" in tasks,
                        "online_calls": args.online_calls,
                    },
                )
            )
            raw["online_stores"][store] = r
            store_rows = online_store_rows(store, r, shape)
            if "materialize" not in tasks:
                store_rows = [row for row in store_rows if row[0] != "materialise"]
            rows += store_rows

    meta = {
        **environment(),
        "command": command,
        "shape": asdict(shape),
        "ttl_s": TTL.total_seconds(),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS_DIR / f"features-{stamp}.json"
    output.write_text(json.dumps({**meta, "results": raw}, indent=2, default=str) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", folder], check=False)
    print(json.dumps(meta, indent=2))
    print()
    print(f"Command: `{command}`")
    print(f"Data: {made}")
    print()
    print(LEGEND)
    print()
    print(markdown(rows))
    print(f"\nwritten to {output}" + (f"; data kept in {folder}" if args.keep else ""))


if __name__ == "__main__":
    main()
