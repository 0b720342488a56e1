"""The event log: one contract suite over every backend (Parquet files, PostgreSQL), plus what is
particular to the Parquet layout (atomic files, hive-partitioned globs for DuckDB)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.errors import InvalidInput
from shipyard.storage.events import (
    EXPOSURES,
    OUTCOMES,
    PREDICTIONS,
    EventLog,
    ParquetEventLog,
    PostgresEventLog,
    delete_older_than,
    open_event_log,
)
from shipyard.storage.events.kinds import TIME

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(
    params=[
        pytest.param("parquet", id="parquet"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    if request.param == "parquet":
        url = str(tmp_path / "events")
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_event_log(url)
    yield opened
    opened.close()


def predictions(
    times: list[datetime], model: str = "churn", first_id: int = 0, **payload: list[Any]
) -> pa.Table:
    n = len(times)
    columns: dict[str, Any] = {
        "time": pa.array(times, TIME),
        "model": [model] * n,
        "version": [3] * n,
        "variant": ["a" if i % 2 else None for i in range(n)],
        "request_id": [f"r{first_id + i:05d}" for i in range(n)],
        "row": [0] * n,
        "unit_key": [f"u{i % 3}" for i in range(n)],
        "latency_ms": [0.5 + i for i in range(n)],
    }
    columns.update(payload)
    return pa.table(columns)


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


# ------------------------------------------------------------------- contract
def test_appended_records_read_back_with_every_field(log: EventLog) -> None:
    times = [T0 + timedelta(minutes=m) for m in (5, 1, 3)]
    batch = predictions(
        times, in_age=[31, 45, 28], in_city=["oslo", "rome", "paris"], out_output=[0.1, 0.7, 0.4]
    )
    assert log.append(PREDICTIONS, batch) == 3
    table = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=1))
    assert table.schema.field("time").type == TIME
    assert table.column_names[:8] == [c.name for c in PREDICTIONS.columns]
    assert sorted(table.column_names[8:]) == ["in_age", "in_city", "out_output"]
    expected = sorted(rows(batch), key=lambda r: r["time"])  # read in time order
    assert rows(table) == [{k: r[k] for k in table.column_names} for r in expected]


def test_a_read_window_is_start_inclusive_end_exclusive_and_one_key(log: EventLog) -> None:
    times = [T0 - timedelta(seconds=1), T0, T0 + timedelta(minutes=30), T0 + timedelta(hours=1)]
    log.append(PREDICTIONS, predictions(times, in_x=[1.0, 2.0, 3.0, 4.0]))
    log.append(PREDICTIONS, predictions([T0], model="fraud", in_x=[9.0]))
    table = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=1))
    assert table.column("in_x").to_pylist() == [2.0, 3.0]
    assert set(table.column("model").to_pylist()) == {"churn"}
    assert log.read(PREDICTIONS, "fraud", T0, T0 + timedelta(hours=1)).num_rows == 1


def test_records_spread_over_hours_and_appends_read_as_one_table(log: EventLog) -> None:
    first = [T0 + timedelta(minutes=50 + 5 * i) for i in range(6)]  # 10:50 .. 11:15
    log.append(PREDICTIONS, predictions(first, in_x=[float(i) for i in range(6)]))
    later = [T0 + timedelta(hours=2, minutes=i) for i in range(2)]
    log.append(PREDICTIONS, predictions(later, first_id=6, in_x=[6.0, 7.0]))
    table = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=3))
    assert table.column("in_x").to_pylist() == [float(i) for i in range(8)]
    assert table.column("request_id").to_pylist() == [f"r{i:05d}" for i in range(8)]


def test_payload_columns_that_change_between_appends_are_united(log: EventLog) -> None:
    """A new model version may add or drop an input: reads unite columns by name."""
    log.append(PREDICTIONS, predictions([T0], in_a=[1.0], out_output=[0.5]))
    log.append(
        PREDICTIONS,
        predictions([T0 + timedelta(minutes=1)], first_id=1, in_b=["x"], out_output=[0.2]),
    )
    table = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=1))
    got = [{k: r[k] for k in ("in_a", "in_b", "out_output")} for r in rows(table)]
    assert got == [
        {"in_a": 1.0, "in_b": None, "out_output": 0.5},
        {"in_a": None, "in_b": "x", "out_output": 0.2},
    ]


def test_an_empty_window_is_an_empty_table_with_the_fixed_columns(log: EventLog) -> None:
    table = log.read(PREDICTIONS, "nothing-here", T0, T0 + timedelta(hours=1))
    assert table.num_rows == 0
    assert table.schema == PREDICTIONS.schema
    assert log.append(PREDICTIONS, predictions([])) == 0


def test_retention_deletes_whole_hours_that_ended_before_the_cutoff(log: EventLog) -> None:
    times = [T0 + timedelta(minutes=10), T0 + timedelta(hours=1, minutes=10)]
    times += [T0 + timedelta(hours=2, minutes=10)]
    log.append(PREDICTIONS, predictions(times, in_x=[1.0, 2.0, 3.0]))
    log.append(PREDICTIONS, predictions([T0 + timedelta(minutes=20)], model="fraud", in_x=[9.0]))
    cutoff = T0 + timedelta(hours=1, minutes=30)  # hour 10 has ended, hour 11 has not
    assert log.delete_before(PREDICTIONS, cutoff) == 2  # churn 10:10 and fraud 10:20
    left = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=3))
    assert left.column("in_x").to_pylist() == [2.0, 3.0]
    assert log.read(PREDICTIONS, "fraud", T0, T0 + timedelta(hours=3)).num_rows == 0
    assert log.delete_before(PREDICTIONS, cutoff) == 0
    # N days: everything older than two days before "now" (hour 12 ends before now - 2 days)
    now = T0 + timedelta(days=2, hours=3)
    assert delete_older_than(log, PREDICTIONS, days=2, now=now) == 2
    assert log.read(PREDICTIONS, "churn", T0, now).num_rows == 0


def test_the_salt_is_made_once_and_shared_by_every_writer(log: EventLog) -> None:
    salt = log.salt()
    assert len(salt) == 32
    assert log.salt() == salt
    other = open_event_log(log.url if isinstance(log, ParquetEventLog) else _pg_url(log))
    try:
        assert other.salt() == salt
    finally:
        other.close()


def _pg_url(log: EventLog) -> str:
    assert isinstance(log, PostgresEventLog)
    return log._conninfo  # the test database has no password to hide


def test_another_record_kind_has_its_own_partition_column(log: EventLog) -> None:
    exposures = pa.table(
        {
            "time": pa.array([T0, T0 + timedelta(minutes=1)], TIME),
            "experiment": ["checkout", "checkout"],
            "deployment": ["churn", "churn"],
            "variant": ["control", "treatment"],
            "request_id": ["r1", "r2"],
            "status": pa.array([200, 503], pa.int32()),
            "latency_ms": [1.5, 2.5],
        }
    )
    assert log.append(EXPOSURES, exposures) == 2
    table = log.read(EXPOSURES, "checkout", T0, T0 + timedelta(hours=1))
    assert table.column("variant").to_pylist() == ["control", "treatment"]
    assert table.column("unit_key").to_pylist() == [None, None]  # absent nullable: null
    assert log.read(PREDICTIONS, "checkout", T0, T0 + timedelta(hours=1)).num_rows == 0


def test_outcomes_keyed_by_request_or_by_unit_read_back(log: EventLog) -> None:
    outcomes = pa.table(
        {
            "time": pa.array([T0, T0 + timedelta(minutes=1)], TIME),
            "model": ["churn", "churn"],
            "request_id": ["r1", None],
            "row": pa.array([1, None], pa.int32()),
            "unit_key": [None, "user-9"],
            "idempotency_key": ["k1", "k2"],
            "label": [1, 0],  # integers are stored as the float label
        }
    )
    assert log.append(OUTCOMES, outcomes) == 2
    table = log.read(OUTCOMES, "churn", T0, T0 + timedelta(hours=1))
    assert rows(table) == [
        {k: r.get(k) for k in table.column_names} | {"label": float(r["label"])}
        for r in rows(outcomes)
    ]
    assert table.column("metric").to_pylist() == [None, None]  # the model's target


def test_concurrent_writers_lose_nothing(log: EventLog) -> None:
    def write(writer: int) -> None:
        for batch in range(5):
            first = writer * 1000 + batch * 10
            times = [T0 + timedelta(seconds=first + i) for i in range(10)]
            log.append(PREDICTIONS, predictions(times, first_id=first, in_x=[1.0] * 10))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    table = log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=2))
    ids = table.column("request_id").to_pylist()
    assert len(ids) == len(set(ids)) == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda t: t.drop_columns(["request_id"]), "request_id", id="missing"),
        pytest.param(lambda t: t.append_column("extra", pa.array([1])), "extra", id="unknown"),
        pytest.param(
            lambda t: t.set_column(1, "model", pa.array([None], pa.string())), "model", id="null"
        ),
        pytest.param(
            lambda t: t.set_column(7, "latency_ms", pa.array(["slow"])), "latency_ms", id="type"
        ),
    ],
)
def test_bad_records_are_refused_naming_the_column(log: EventLog, change: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        log.append(PREDICTIONS, change(predictions([T0])))
    assert info.value.field == field
    assert field in info.value.message


def test_reads_need_aware_times_and_a_valid_key(log: EventLog) -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        log.read(PREDICTIONS, "churn", datetime(2026, 1, 1), T0)
    with pytest.raises(InvalidInput, match="not valid"):
        log.read(PREDICTIONS, "../etc", T0, T0 + timedelta(hours=1))


def test_the_backend_is_chosen_by_the_url(tmp_path: Path) -> None:
    assert isinstance(open_event_log(str(tmp_path)), ParquetEventLog)
    assert isinstance(open_event_log(f"file://{tmp_path}"), ParquetEventLog)
    with pytest.raises(InvalidInput, match="s3"):
        open_event_log("s3://bucket/events")


# ---------------------------------------------------------------- Parquet only
def test_parquet_files_are_hive_partitioned_by_model_and_hour(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log.append(PREDICTIONS, predictions([T0, T0 + timedelta(hours=1)], in_x=[1.0, 2.0]))
    files = sorted(p.relative_to(log.root).parent for p in log.root.rglob("part-*.parquet"))
    assert [str(f) for f in files] == [
        "predictions/model=churn/hour=2026-03-01T10",
        "predictions/model=churn/hour=2026-03-01T11",
    ]
    found = duckdb.sql(
        f"SELECT hour, in_x FROM read_parquet('{log.glob(PREDICTIONS)}', hive_partitioning=true) "
        "ORDER BY hour"
    ).fetchall()
    assert found == [("2026-03-01T10", 1.0), ("2026-03-01T11", 2.0)]


def test_parquet_readers_never_list_temporary_files(tmp_path: Path) -> None:
    """What a writer killed mid-file leaves behind (a temporary name) is invisible to readers."""
    log = ParquetEventLog(tmp_path / "events")
    log.append(PREDICTIONS, predictions([T0], in_x=[1.0]))
    (hour,) = (log.root / "predictions" / "model=churn").iterdir()
    (hour / ".part-deadbeef.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert log.read(PREDICTIONS, "churn", T0, T0 + timedelta(hours=1)).num_rows == 1
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{log.glob(PREDICTIONS)}')").fetchall()
    assert count == [(1,)]
    assert all(
        pq.read_metadata(f).num_rows == 1
        for f in log.files(PREDICTIONS, "churn", T0, T0 + timedelta(hours=1))
    )
