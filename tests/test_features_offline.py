"""Offline feature retrieval: point-in-time joins checked value by value, every source type, errors.

Each edge case builds its own tiny event table so the expected value of every cell is known by
hand; a seeded random cross-check compares the DuckDB join with a brute-force loop over a few
hundred rows.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shipyard.errors import InvalidInput
from shipyard.features import offline
from shipyard.features.definitions import (
    CsvSource,
    DuckDBSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    ParquetSource,
    PostgresSource,
    RequestSource,
)
from shipyard.features.offline import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    get_historical_features,
    latest_per_entity,
    numpy_column,
    training_fingerprint,
)
from shipyard.features.sources import connect

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DRIVER = Entity("driver", ["driver_id"])


def at(hours: float = 0, *, minutes: float = 0, microseconds: int = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, microseconds=microseconds)


def events(rows: list[dict[str, Any]], *, tz: str | None = "UTC", created: bool = True) -> pa.Table:
    """An event table: driver_id, event_timestamp, [created], value (float64)."""
    stamp = pa.timestamp("us", tz=tz)
    columns: dict[str, pa.Array] = {
        "driver_id": pa.array([r["driver_id"] for r in rows], pa.int64()),
        "event_timestamp": pa.array([_wall(r["ts"], tz) for r in rows], stamp),
    }
    if created:
        columns["created"] = pa.array([_wall(r.get("created"), tz) for r in rows], stamp)
    columns["value"] = pa.array([r.get("value") for r in rows], pa.float64())
    return pa.table(columns)


def _wall(value: datetime | None, tz: str | None) -> datetime | None:
    """Naive sources hold UTC wall-clock time."""
    if value is None or tz is not None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def parquet_view(
    tmp_path: Path,
    table: pa.Table,
    *,
    name: str = "stats",
    ttl: timedelta | None = timedelta(hours=2),
    created: bool = True,
    entities: tuple[Entity, ...] = (DRIVER,),
    features: tuple[Field, ...] = (Field("value", "float64"),),
) -> FeatureView:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    return FeatureView(
        name,
        entities=entities,
        features=features,
        source=ParquetSource(str(path)),
        timestamp_field="event_timestamp",
        created_timestamp_field="created" if created else None,
        ttl=ttl,
    )


def spine(rows: list[tuple[int | None, datetime | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": pd.array([r[0] for r in rows], dtype="Int64"),
            "event_timestamp": pd.to_datetime([r[1] for r in rows], utc=True),
        }
    )


def values(result: offline.TrainingSet, column: str = "value") -> list[Any]:
    return list(result.to_arrow().column(column).to_pylist())


# ------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("latest_first", [False, True], ids=["latest-last", "latest-first"])
def test_ties_on_event_time_go_to_the_latest_created(tmp_path: Path, latest_first: bool) -> None:
    tied = [
        {"driver_id": 1, "ts": at(1), "created": at(1, minutes=5), "value": 10.0},
        {"driver_id": 1, "ts": at(1), "created": at(1, minutes=30), "value": 20.0},
        {"driver_id": 1, "ts": at(1), "created": at(1, minutes=10), "value": 15.0},
    ]
    if latest_first:
        tied = [tied[1], tied[0], tied[2]]
    view = parquet_view(tmp_path, events(tied))

    result = get_historical_features(
        spine([(1, at(1)), (1, at(2))]), ["stats:value"], {"stats": view}
    )

    assert values(result) == [20.0, 20.0]


def test_a_row_with_a_created_time_beats_a_tied_row_without(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 1, "ts": at(1), "created": at(1), "value": 1.0},
                {"driver_id": 1, "ts": at(1), "created": None, "value": 2.0},
            ]
        ),
    )
    result = get_historical_features(spine([(1, at(1))]), ["stats:value"], {"stats": view})
    assert values(result) == [1.0]


def test_events_after_the_spine_time_are_ignored(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 1, "ts": at(1), "created": at(1), "value": 1.0},
                {"driver_id": 1, "ts": at(1, microseconds=1), "created": at(1), "value": 2.0},
                {"driver_id": 1, "ts": at(1.5), "created": at(0), "value": 3.0},
            ]
        ),
    )
    result = get_historical_features(
        spine([(1, at(1)), (1, at(1, minutes=29)), (1, at(0.5))]), ["stats:value"], {"stats": view}
    )
    assert values(result) == [1.0, 2.0, None]


def test_a_gap_longer_than_the_ttl_gives_null(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 7.0}]),
        ttl=timedelta(hours=2),
    )
    result = get_historical_features(
        spine([(1, at(1)), (1, at(3)), (1, at(30))]), ["stats:value"], {"stats": view}
    )
    assert values(result) == [7.0, None, None]


@pytest.mark.parametrize("created", [True, False], ids=["created-field", "no-created-field"])
def test_the_ttl_window_includes_both_ends(tmp_path: Path, created: bool) -> None:
    ttl = timedelta(hours=2)
    view = parquet_view(
        tmp_path,
        events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 7.0}], created=created),
        ttl=ttl,
        created=created,
    )
    frame = spine(
        [
            (1, at(0)),  # event time == spine time
            (1, at(2)),  # event time == spine time - ttl
            (1, at(2, microseconds=1)),  # one microsecond too late
            (1, at(0, microseconds=-1)),  # one microsecond before the event
        ]
    )
    result = get_historical_features(frame, ["stats:value"], {"stats": view})
    assert values(result) == [7.0, 7.0, None, None]


def test_no_ttl_reaches_any_age(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 7.0}]),
        ttl=None,
    )
    result = get_historical_features(
        spine([(1, at(24 * 365)), (1, at(-1))]), ["stats:value"], {"stats": view}
    )
    assert values(result) == [7.0, None]


def test_a_null_in_the_chosen_event_stays_null(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 1, "ts": at(0), "created": at(0), "value": 5.0},
                {"driver_id": 1, "ts": at(1), "created": at(1), "value": None},
            ]
        ),
    )
    result = get_historical_features(
        spine([(1, at(0.5)), (1, at(1.5))]), ["stats:value"], {"stats": view}
    )
    assert values(result) == [5.0, None]


def test_duplicate_and_unsorted_spine_rows_are_kept_in_order(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0},
                {"driver_id": 1, "ts": at(1), "created": at(1), "value": 2.0},
                {"driver_id": 2, "ts": at(0), "created": at(0), "value": 3.0},
            ]
        ),
    )
    frame = spine([(1, at(1)), (2, at(0)), (1, at(1)), (1, at(0)), (1, at(1)), (2, at(0))])
    frame["label"] = [10, 11, 12, 13, 14, 15]

    result = get_historical_features(frame, ["stats:value"], {"stats": view})

    table = result.to_arrow()
    assert table.column_names == ["driver_id", "event_timestamp", "label", "value"]
    assert table.column("label").to_pylist() == [10, 11, 12, 13, 14, 15]
    assert values(result) == [2.0, 3.0, 2.0, 1.0, 2.0, 3.0]
    assert result.num_rows == 6


def test_entities_never_seen_and_null_keys_or_times_get_nulls(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path, events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}])
    )
    frame = spine([(99, at(0)), (1, at(0)), (None, at(0)), (1, None)])
    result = get_historical_features(frame, ["stats:value"], {"stats": view})
    assert values(result) == [None, 1.0, None, None]


def test_two_views_with_different_ttls_in_one_call(tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}]
    short = parquet_view(tmp_path, events(rows), name="short", ttl=timedelta(hours=1))
    long_rows = [{"driver_id": 1, "ts": at(0), "created": at(0), "value": 2.0}]
    long = parquet_view(tmp_path, events(long_rows), name="long", ttl=timedelta(days=1))

    result = get_historical_features(
        spine([(1, at(0.5)), (1, at(1)), (1, at(5)), (1, at(25))]),
        ["short:value", "long:value"],
        {"short": short, "long": long},
        full_feature_names=True,
    )

    table = result.to_arrow()
    assert table.column("short__value").to_pylist() == [1.0, 1.0, None, None]
    assert table.column("long__value").to_pylist() == [2.0, 2.0, 2.0, None]


@pytest.mark.parametrize(
    ("spine_tz", "source_tz"),
    [
        pytest.param("America/New_York", None, id="aware-spine-naive-source"),
        pytest.param(None, "Asia/Kolkata", id="naive-spine-aware-source"),
        pytest.param("Asia/Tokyo", "America/Los_Angeles", id="both-aware-different-zones"),
    ],
)
def test_naive_timestamps_are_utc_and_zones_are_converted(
    tmp_path: Path, spine_tz: str | None, source_tz: str | None
) -> None:
    source_rows = [
        {"driver_id": 1, "ts": at(10), "created": at(10), "value": 1.0},
        {"driver_id": 1, "ts": at(12), "created": at(12), "value": 2.0},
    ]
    table = events(source_rows, tz=None) if source_tz is None else events(source_rows)
    if source_tz is not None:
        table = table.set_column(
            1, "event_timestamp", table.column(1).cast(pa.timestamp("us", tz=source_tz))
        )
    view = parquet_view(tmp_path, table, ttl=timedelta(hours=1))
    times = [at(10, minutes=30), at(11, minutes=30), at(12)]
    if spine_tz is None:
        stamps = pd.Series([t.replace(tzinfo=None) for t in times], dtype="datetime64[us]")
    else:
        stamps = pd.Series(times).dt.tz_convert(ZoneInfo(spine_tz))
    frame = pd.DataFrame({"driver_id": [1, 1, 1], "event_timestamp": stamps})

    result = get_historical_features(frame, ["stats:value"], {"stats": view})

    assert values(result) == [1.0, None, 2.0]


def test_composite_join_keys(tmp_path: Path) -> None:
    route = Entity("route", ["origin", "destination"])
    table = pa.table(
        {
            "origin": ["A", "A", "B"],
            "destination": ["B", "C", "A"],
            "event_timestamp": pa.array([at(0), at(0), at(0)], pa.timestamp("us", tz="UTC")),
            "created": pa.array([at(0), at(0), at(0)], pa.timestamp("us", tz="UTC")),
            "value": [1.0, 2.0, 3.0],
        }
    )
    view = parquet_view(tmp_path, table, entities=(route,))
    frame = pd.DataFrame(
        {
            "origin": ["A", "B", "A", "C"],
            "destination": ["C", "A", "B", "A"],
            "event_timestamp": [at(1)] * 4,
        }
    )
    result = get_historical_features(frame, ["stats:value"], {"stats": view})
    assert values(result) == [2.0, 3.0, 1.0, None]


def test_on_demand_view_over_request_fields_and_view_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pa.table(
        {
            "driver_id": pa.array(list(range(10)), pa.int64()),
            "event_timestamp": pa.array([at(0)] * 10, pa.timestamp("us", tz="UTC")),
            "created": pa.array([at(0)] * 10, pa.timestamp("us", tz="UTC")),
            "rate": [float(i) for i in range(10)],
            "trips": pa.array(list(range(100, 110)), pa.int64()),
        }
    )
    view = parquet_view(
        tmp_path, table, features=(Field("rate", "float64"), Field("trips", "int64"))
    )
    request = RequestSource("req", [Field("distance", "float64")])
    calls: list[int] = []

    def fare(columns: Any) -> dict[str, Any]:
        calls.append(len(columns["distance"]))
        return {
            "fare": columns["rate"] * columns["distance"],
            "busy": columns["trips"] > 104,
        }

    odfv = OnDemandFeatureView(
        "pricing",
        sources=[view.select("rate", "trips"), request],
        features=[Field("fare", "float64"), Field("busy", "bool")],
        function=fare,
    )
    monkeypatch.setattr(offline, "CHUNK_ROWS", 4)
    frame = pd.DataFrame(
        {
            "driver_id": [0, 1, 2, 3, 4, 5, 6, 7, 8, 42],
            "event_timestamp": [at(1)] * 10,
            "distance": [2.0] * 10,
        }
    )

    result = get_historical_features(
        frame, ["pricing:fare", "pricing:busy"], {"stats": view, "pricing": odfv}
    )

    table = result.to_arrow()
    assert table.column_names == ["driver_id", "event_timestamp", "distance", "fare", "busy"]
    assert table.column("fare").to_pylist() == [
        0.0,
        2.0,
        4.0,
        6.0,
        8.0,
        10.0,
        12.0,
        14.0,
        16.0,
        None,
    ]
    assert table.column("busy").to_pylist() == [False] * 5 + [True] * 4 + [False]
    assert table.schema.field("busy").type == pa.bool_()
    assert calls == [4, 4, 2]  # vectorised, in chunks


def test_full_feature_names_and_clashing_names(tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}]
    a = parquet_view(tmp_path, events(rows), name="a")
    b = parquet_view(tmp_path, events(rows), name="b")
    views = {"a": a, "b": b}
    frame = spine([(1, at(0))])

    result = get_historical_features(frame, ["a:value", "b:value"], views, full_feature_names=True)
    assert result.to_arrow().column_names == [
        "driver_id",
        "event_timestamp",
        "a__value",
        "b__value",
    ]
    assert result.feature_refs == ["a:value", "b:value"]

    with pytest.raises(
        InvalidInput, match=r"'b:value' would be column 'value', which feature 'a:value'"
    ) as exc:
        get_historical_features(frame, ["a:value", "b:value"], views)
    assert exc.value.field == "features"
    frame["value"] = [0.0]
    with pytest.raises(InvalidInput, match="the entity DataFrame"):
        get_historical_features(frame, ["a:value"], views)


def test_to_parquet_round_trip_records_lineage(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.5},
                {"driver_id": 2, "ts": at(0), "created": at(0), "value": None},
            ]
        ),
    )
    result = get_historical_features(
        spine([(1, at(1)), (2, at(1)), (3, at(1))]), FeatureService("svc", [view]), {"stats": view}
    )
    out = result.to_parquet(tmp_path / "sets" / "train.parquet")

    back = pq.read_table(out)
    assert back.equals(result.to_arrow().replace_schema_metadata(back.schema.metadata))
    meta = back.schema.metadata
    assert json.loads(meta[b"shipyard.feature_refs"]) == ["stats:value"]
    assert meta[b"shipyard.fingerprint"].decode() == result.fingerprint
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.parquet"]  # no temp file left
    assert back.schema.field("event_timestamp").type.tz == "UTC"
    frame = result.to_pandas()
    assert frame["value"].isna().tolist() == [False, True, True]


def test_fingerprints_name_the_features_and_the_data(tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}]
    view = parquet_view(tmp_path, events(rows))
    frame = spine([(1, at(1))])
    first = get_historical_features(frame, ["stats:value"], {"stats": view})
    again = get_historical_features(frame, ["stats:value"], {"stats": view})
    longer = FeatureView(
        "stats",
        entities=[DRIVER],
        features=[Field("value", "float64")],
        source=view.source,
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
        ttl=timedelta(hours=3),
    )
    changed = get_historical_features(frame, ["stats:value"], {"stats": longer})

    assert first.fingerprint == again.fingerprint == training_fingerprint(["stats:value"], [view])
    assert changed.fingerprint != first.fingerprint  # the ttl is part of the definition
    assert first.data_fingerprint() == again.data_fingerprint() == changed.data_fingerprint()
    later = get_historical_features(spine([(1, at(1.5))]), ["stats:value"], {"stats": view})
    assert later.fingerprint == first.fingerprint
    assert later.data_fingerprint() != first.data_fingerprint()


def test_entity_data_as_arrow_or_parquet_path(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path, events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 4.0}])
    )
    table = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int32()),
            "when": pa.array([at(1), at(1)], pa.timestamp("ns")),
        }
    )
    pq.write_table(table, tmp_path / "spine.parquet")
    for entity_data in (table, tmp_path / "spine.parquet", str(tmp_path / "spine.parquet")):
        result = get_historical_features(
            entity_data, ["stats:value"], {"stats": view}, timestamp_column="when"
        )
        assert values(result) == [4.0, None]
        assert result.to_arrow().column("when").type == pa.timestamp("ns")


def test_a_given_connection_is_left_open_and_clean(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path, events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 4.0}])
    )
    con = duckdb.connect()
    before = con.sql("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall()
    result = get_historical_features(
        spine([(1, at(0))]), ["stats:value"], {"stats": view}, connection=con
    )
    assert values(result) == [4.0]
    assert con.sql("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall() == before
    con.close()


# ------------------------------------------------------------------ sources
def _check_source(view: FeatureView) -> None:
    frame = spine([(1, at(1)), (2, at(1)), (1, at(0, minutes=30)), (3, at(1))])
    result = get_historical_features(frame, ["stats:value"], {"stats": view})
    assert values(result) == [2.0, 3.0, 1.0, None]


SOURCE_ROWS = [
    {"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0},
    {"driver_id": 1, "ts": at(1), "created": at(1), "value": 2.0},
    {"driver_id": 2, "ts": at(0), "created": at(0), "value": 3.0},
    {"driver_id": 1, "ts": at(1), "created": at(0.5), "value": -1.0},  # tie, older created
]


def _view_on(source: Any) -> FeatureView:
    return FeatureView(
        "stats",
        entities=[DRIVER],
        features=[Field("value", "float64")],
        source=source,
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
        ttl=timedelta(hours=2),
    )


def test_parquet_glob_and_folder_sources(tmp_path: Path) -> None:
    table = events(SOURCE_ROWS)
    folder = tmp_path / "events"
    (folder / "day=1").mkdir(parents=True)
    pq.write_table(table.slice(0, 2), folder / "day=1" / "part-0.parquet")
    pq.write_table(table.slice(2), folder / "part-1.parquet")
    _check_source(_view_on(ParquetSource(str(folder))))
    (folder / "day=1" / "part-0.parquet").rename(folder / "part-0.parquet")
    (folder / "day=1").rmdir()
    _check_source(_view_on(ParquetSource(str(folder / "part-*.parquet"))))


def test_csv_source(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    pacsv.write_csv(events(SOURCE_ROWS, tz=None), path)
    _check_source(_view_on(CsvSource(str(path))))


def test_duckdb_query_sources(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.register("rows", events(SOURCE_ROWS))
        con.execute("CREATE TABLE driver_events AS SELECT * FROM rows")
    _check_source(_view_on(DuckDBSource("SELECT * FROM driver_events;", database=str(database))))
    parquet = tmp_path / "events.parquet"
    pq.write_table(events(SOURCE_ROWS), parquet)
    _check_source(_view_on(DuckDBSource(f"SELECT * FROM read_parquet('{parquet}')")))

    con = duckdb.connect()
    get_historical_features(
        spine([(1, at(1))]),
        ["stats:value"],
        {"stats": _view_on(DuckDBSource("SELECT * FROM driver_events", str(database)))},
        connection=con,
    )
    assert con.sql("SELECT current_setting('search_path')").fetchall() == [("",)]
    names = {r[0] for r in con.sql("SELECT database_name FROM duckdb_databases()").fetchall()}
    assert not any(n.startswith("sy_db_") for n in names)  # detached again
    con.close()


@pytest.mark.postgres
def test_postgres_query_source(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "CREATE TABLE driver_events (driver_id bigint, event_timestamp timestamptz, "
            "created timestamptz, value double precision)"
        )
        for row in SOURCE_ROWS:
            conn.execute(
                "INSERT INTO driver_events VALUES (%s, %s, %s, %s)",
                (row["driver_id"], row["ts"], row["created"], row["value"]),
            )
    _check_source(_view_on(PostgresSource("SELECT * FROM driver_events", postgres_url)))
    with pytest.raises(InvalidInput, match=r"query of .*PostgreSQL.* failed"):
        _check_source(_view_on(PostgresSource("SELECT * FROM missing_table", postgres_url)))


@pytest.mark.s3
def test_parquet_source_on_s3(s3_bucket_url: str, s3_endpoint: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    table = events(SOURCE_ROWS)
    with fs.open(f"{s3_bucket_url}/events/part-0.parquet", "wb") as f:
        pq.write_table(table.slice(0, 2), f)
    with fs.open(f"{s3_bucket_url}/events/part-1.parquet", "wb") as f:
        pq.write_table(table.slice(2), f)
    view = _view_on(ParquetSource(f"{s3_bucket_url}/events"))
    con = connect(s3_endpoint_url=s3_endpoint)
    frame = spine([(1, at(1)), (2, at(1)), (1, at(0, minutes=30)), (3, at(1))])
    result = get_historical_features(frame, ["stats:value"], {"stats": view}, connection=con)
    assert values(result) == [2.0, 3.0, 1.0, None]
    con.close()


# ------------------------------------------------------------------ materialisation
def test_latest_per_entity_takes_the_latest_row_in_the_window(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events(
            [
                {"driver_id": 2, "ts": at(1), "created": at(1), "value": 20.0},
                {"driver_id": 1, "ts": at(1), "created": at(1, minutes=9), "value": 11.0},
                {"driver_id": 1, "ts": at(1), "created": at(1, minutes=1), "value": 10.0},
                {"driver_id": 1, "ts": at(2), "created": at(2), "value": 12.0},  # at end: out
                {"driver_id": 2, "ts": at(0, minutes=59), "created": at(3), "value": 21.0},
                {"driver_id": 3, "ts": at(0.5), "created": at(0.5), "value": None},
                {
                    "driver_id": 3,
                    "ts": at(0.25),
                    "created": at(0.25),
                    "value": 30.0,
                },  # no back-fill
                {"driver_id": 4, "ts": at(-1), "created": at(-1), "value": 40.0},  # before start
            ]
        ),
    )
    table = latest_per_entity(view, at(0), at(2))

    assert table.column_names == ["driver_id", EVENT_TIMESTAMP, CREATED_TIMESTAMP, "value"]
    assert table.column("driver_id").to_pylist() == [1, 2, 3]
    assert table.column(EVENT_TIMESTAMP).to_pylist() == [at(1), at(1), at(0.5)]
    assert table.column(CREATED_TIMESTAMP).to_pylist() == [at(1, minutes=9), at(1), at(0.5)]
    assert table.column("value").to_pylist() == [11.0, 20.0, None]
    assert table.schema.field(EVENT_TIMESTAMP).type == pa.timestamp("us", tz="UTC")

    everything = latest_per_entity(view, None, None)
    assert everything.column("value").to_pylist() == [12.0, 20.0, None, 40.0]
    naive_end = latest_per_entity(view, None, datetime(2024, 1, 1, 1))  # naive = UTC
    assert naive_end.column("value").to_pylist() == [21.0, None, 40.0]  # 3's null stays null
    assert latest_per_entity(view, at(5), at(5)).num_rows == 0
    with pytest.raises(InvalidInput, match="after end") as exc:
        latest_per_entity(view, at(5), at(4))
    assert exc.value.field == "start"


def test_latest_per_entity_without_created_field(tmp_path: Path) -> None:
    rows = [
        {"driver_id": 1, "ts": at(0), "value": 1.0},
        {"driver_id": 1, "ts": at(1), "value": 2.0},
    ]
    view = parquet_view(tmp_path, events(rows, created=False), created=False)
    table = latest_per_entity(view, at(0), at(5))
    assert table.column("value").to_pylist() == [2.0]
    assert table.column(CREATED_TIMESTAMP).to_pylist() == [None]


# ------------------------------------------------------------------ errors
def test_errors_name_the_bad_field(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path, events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}])
    )
    views = {"stats": view}
    frame = spine([(1, at(0))])

    def error(*args: Any, **kwargs: Any) -> InvalidInput:
        with pytest.raises(InvalidInput) as exc:
            get_historical_features(*args, **kwargs)
        return exc.value

    e = error(frame, ["nope:value"], views)
    assert e.field == "features" and "no feature view 'nope'" in e.message and "stats" in e.message
    e = error(frame, ["stats:nope"], views)
    assert e.field == "features" and "no feature 'nope'" in e.message
    e = error(frame, ["stats"], views)
    assert e.field == "features" and "'view:feature'" in e.message
    e = error(frame, ["stats:value", "stats:value"], views)
    assert "twice" in e.message
    e = error(frame.drop(columns=["driver_id"]), ["stats:value"], views)
    assert e.field == "driver_id" and "join key" in e.message
    e = error(frame, ["stats:value"], views, timestamp_column="ts")
    assert e.field == "ts" and "no timestamp column" in e.message
    e = error(frame.assign(event_timestamp="2024-01-01"), ["stats:value"], views)
    assert e.field == "event_timestamp" and "expected timestamps" in e.message
    e = error(frame.assign(driver_id=["1"]), ["stats:value"], views)
    assert e.field == "driver_id" and "both numbers or both strings" in e.message
    e = error([1, 2], ["stats:value"], views)
    assert e.field == "entity_df"
    e = error(str(tmp_path / "missing.parquet"), ["stats:value"], views)
    assert e.field == "entity_df" and "does not exist" in e.message


def test_source_errors_name_the_column_and_the_source(tmp_path: Path) -> None:
    table = events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}])
    frame = spine([(1, at(0))])

    missing = parquet_view(tmp_path, table.drop_columns(["value"]), name="m")
    with pytest.raises(InvalidInput, match=r"no column 'value' \(the view's feature\)") as exc:
        get_historical_features(frame, ["m:value"], {"m": missing})
    assert exc.value.field == "value" and "m.parquet" in exc.value.message

    no_created = parquet_view(tmp_path, table.drop_columns(["created"]), name="c")
    with pytest.raises(InvalidInput, match="created timestamp field") as exc:
        get_historical_features(frame, ["c:value"], {"c": no_created})
    assert exc.value.field == "created"

    text_time = table.set_column(1, "event_timestamp", pa.array(["2024-01-01"]))
    bad_time = parquet_view(tmp_path, text_time, name="t")
    with pytest.raises(InvalidInput, match="has type VARCHAR; expected a timestamp") as exc:
        latest_per_entity(bad_time, None, None)
    assert exc.value.field == "event_timestamp"

    textual = table.set_column(3, "value", pa.array(["high"]))
    bad_type = parquet_view(tmp_path, textual, name="x")
    with pytest.raises(InvalidInput, match="declared float64") as exc:
        get_historical_features(frame, ["x:value"], {"x": bad_type})
    assert exc.value.field == "value"

    nowhere = _view_on(ParquetSource(str(tmp_path / "nothing" / "*.parquet")))
    with pytest.raises(InvalidInput, match="cannot read its source") as exc:
        get_historical_features(frame, ["stats:value"], {"stats": nowhere})
    assert exc.value.field == "source"

    request = RequestSource("req", [Field("distance", "float64")])
    odfv = OnDemandFeatureView(
        "o", sources=[request], features=[Field("d2", "float64")], function=lambda c: c
    )
    with pytest.raises(InvalidInput, match="request field 'distance'") as exc:
        get_historical_features(frame, ["o:d2"], {"o": odfv})
    assert exc.value.field == "distance"


def test_numpy_column_conversion() -> None:
    assert numpy_column(pa.array([1.0, None])).tolist()[0] == 1.0
    assert math.isnan(numpy_column(pa.array([1.0, None]))[1])
    ints = numpy_column(pa.chunked_array([[1, 2], [3]]))
    assert ints.dtype == np.int64 and ints.flags.writeable
    assert numpy_column(pa.array(["a", None])).tolist() == ["a", None]


# ------------------------------------------------------------------ cross-check
def brute_force(
    spine_rows: list[tuple[int, datetime]],
    event_rows: list[dict[str, Any]],
    ttl: timedelta | None,
) -> list[float | None]:
    """For each spine row, the value of the max (event time, created) event in its window."""
    out: list[float | None] = []
    for key, when in spine_rows:
        window = [
            e
            for e in event_rows
            if e["driver_id"] == key and e["ts"] <= when and (ttl is None or e["ts"] >= when - ttl)
        ]
        if not window:
            out.append(None)
            continue
        best = max(
            window, key=lambda e: (e["ts"], e["created"] or datetime.min.replace(tzinfo=UTC))
        )
        out.append(best["value"])
    return out


@pytest.mark.parametrize("created_field", [True, False], ids=["created", "no-created"])
@pytest.mark.parametrize("ttl_minutes", [None, 1, 45, 180])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_cross_check_against_brute_force(
    tmp_path: Path, seed: int, ttl_minutes: int | None, created_field: bool
) -> None:
    rng = np.random.default_rng(seed)
    drawn: list[dict[str, Any]] = []
    for i in range(400):
        minute = int(rng.integers(0, 600))
        drawn.append(
            {
                "driver_id": int(rng.integers(0, 12)),
                "ts": at(minutes=minute),
                # created times are unique, so a tie-break has exactly one answer
                "created": None if rng.random() < 0.1 else at(minutes=minute, microseconds=i + 1),
                "value": None if rng.random() < 0.1 else float(rng.normal()),
            }
        )
    # Exact ties have one answer only when created times tell them apart: keep at most one
    # tied row without a created time (and, for a view without the field, one row per time).
    seen: set[tuple[int, datetime]] = set()
    event_rows = []
    for e in drawn:
        key = (e["driver_id"], e["ts"])
        if (created_field and e["created"] is not None) or key not in seen:
            seen.add(key)
            event_rows.append(e if created_field else {**e, "created": None})
    event_rows = [event_rows[i] for i in rng.permutation(len(event_rows))]
    spine_rows = [
        (int(rng.integers(0, 14)), at(minutes=int(rng.integers(-30, 660)))) for _ in range(300)
    ]
    spine_rows += spine_rows[:20]  # duplicates
    ttl = None if ttl_minutes is None else timedelta(minutes=ttl_minutes)
    view = parquet_view(
        tmp_path, events(event_rows, created=created_field), ttl=ttl, created=created_field
    )

    result = get_historical_features(spine(list(spine_rows)), ["stats:value"], {"stats": view})

    expected = brute_force(spine_rows, event_rows, ttl)
    assert values(result) == expected
    assert sum(v is not None for v in expected) > 5  # the check is not vacuous
    if created_field:
        assert len({(e["driver_id"], e["ts"]) for e in event_rows}) < len(event_rows)  # ties


def test_an_empty_spine_gives_an_empty_set(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path, events([{"driver_id": 1, "ts": at(0), "created": at(0), "value": 1.0}])
    )
    request = RequestSource("req", [Field("x", "float64")])
    odfv = OnDemandFeatureView(
        "o",
        sources=[view, request],
        features=[Field("y", "float64")],
        function=lambda c: {"y": c["value"] + c["x"]},
    )
    frame = spine([]).assign(x=pd.Series([], dtype="float64"))
    result = get_historical_features(frame, ["stats:value", "o:y"], {"stats": view, "o": odfv})
    assert result.num_rows == 0
    assert result.to_arrow().column_names == ["driver_id", "event_timestamp", "x", "value", "y"]


def test_offset_zones_in_a_fixed_offset_spine(tmp_path: Path) -> None:
    view = parquet_view(
        tmp_path,
        events([{"driver_id": 1, "ts": at(5), "created": at(5), "value": 1.0}]),
        ttl=timedelta(minutes=1),
    )
    plus_five = timezone(timedelta(hours=5))
    frame = pd.DataFrame(
        {"driver_id": [1, 1], "event_timestamp": [datetime(2024, 1, 1, 10, tzinfo=plus_five)] * 2}
    )
    frame.loc[1, "event_timestamp"] = datetime(2024, 1, 1, 5, tzinfo=plus_five)
    result = get_historical_features(frame, ["stats:value"], {"stats": view})
    assert values(result) == [1.0, None]
