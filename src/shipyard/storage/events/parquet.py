"""The embedded event log: Parquet files under the workspace, partitioned by key and hour.

Layout (hive-style, so DuckDB's ``read_parquet(..., hive_partitioning=true)`` sees ``model`` and
``hour`` as columns)::

    <root>/<kind>/<partition>=<key>/hour=YYYY-MM-DDTHH/part-<uuid>.parquet

Every append writes new files and never touches an existing one: each file is written under a
temporary name (``.part-<uuid>.parquet.tmp``, which no reader pattern matches), fsynced, renamed
into place and its folder fsynced. A reader therefore sees a file whole or not at all, whatever
kills the writer (``kill -9`` mid-flush leaves at most a temporary file, ignored). Several
processes may append at once: file names are random, nothing is shared.

Retention (:meth:`ParquetEventLog.delete_before`) drops whole hour folders: each is first renamed
out of the pattern readers use, then removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import StorageUnavailable
from shipyard.storage.events.kinds import EventKind, check_key, check_time, conform, empty

FILE_PATTERN = "part-*.parquet"
_TEMP_SUFFIX = ".parquet.tmp"
_HOUR_FORMAT = "%Y-%m-%dT%H"
_US_PER_HOUR = 3_600_000_000


def complete_files(folder: Path) -> list[Path]:
    """The finished Parquet files of one hour folder (temporary files are never listed)."""
    return sorted(folder.glob(FILE_PATTERN))


def hour_folder_name(hour: datetime) -> str:
    return f"hour={hour.astimezone(UTC).strftime(_HOUR_FORMAT)}"


def _hour_of(folder: Path) -> datetime | None:
    try:
        return datetime.strptime(folder.name.removeprefix("hour="), _HOUR_FORMAT).replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parquet(kind: EventKind, table: pa.Table, sink: BinaryIO) -> None:
    """One Parquet file, written for a cheap flush (measured with callgrind on 10,000 rows of 40
    columns: 10.3k instructions a row with pyarrow's defaults and zstd, 6.8k like this):

    - snappy (zstd costs 1.5x its CPU for ~2% smaller files of numbers);
    - dictionary encoding only for text that repeats (model, categorical inputs), never for
      numbers or ids (whose dictionaries are abandoned after costing time);
    - statistics only for the kind's own columns (``time`` is what reads filter on) but not its
      ids, and columns without nulls stored as required (no definition levels);
    - one write batch for the whole table.
    """
    fields = list(table.schema)
    schema = pa.schema(
        [f.with_nullable(c.null_count > 0) for f, c in zip(fields, table.columns, strict=True)]
    )
    fixed = {c.name for c in kind.columns}
    pq.write_table(
        table.cast(schema),
        sink,
        compression="snappy",
        use_dictionary=[
            f.name for f in fields if pa.types.is_string(f.type) and f.name not in kind.distinct
        ],
        write_statistics=[
            f.name for f in fields if f.name in fixed and f.name not in kind.distinct
        ],
        write_batch_size=max(1024, table.num_rows),
    )


class ParquetEventLog:
    """Event records as Parquet files under ``root`` (``<workspace home>/events``)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.url = str(self.root)

    # ------------------------------------------------------------------ paths
    def key_folder(self, kind: EventKind, key: str) -> Path:
        return self.root / kind.name / f"{kind.partition}={check_key(kind, key)}"

    def glob(self, kind: EventKind, key: str | None = None) -> str:
        """A ``read_parquet`` pattern for every complete file of ``kind`` (one key, or all)."""
        keys = "*" if key is None else f"{kind.partition}={check_key(kind, key)}"
        return str(self.root / kind.name / keys / "hour=*" / FILE_PATTERN)

    def files(self, kind: EventKind, key: str, start: datetime, end: datetime) -> list[Path]:
        """The complete files of the hours that overlap ``[start, end)``."""
        first = (
            check_time(start, "start").astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        )
        end = check_time(end, "end")
        folder = self.key_folder(kind, key)
        if not folder.is_dir():
            return []
        found: list[Path] = []
        for hour_folder in sorted(folder.glob("hour=*")):
            hour = _hour_of(hour_folder)
            if hour is not None and first <= hour < end:
                found.extend(complete_files(hour_folder))
        return found

    # ----------------------------------------------------------------- writes
    def append(self, kind: EventKind, records: pa.Table) -> int:
        """Write ``records`` as one new file per (key, hour) they fall in; returns the rows."""
        if records.num_rows == 0:
            return 0
        table = conform(kind, records)
        hours = table.column("time").cast(pa.int64()).to_numpy() // _US_PER_HOUR
        partition = table.column(kind.partition)
        if hours.min() == hours.max() and len(partition.unique()) == 1:  # the usual flush
            self._write(kind, str(partition[0]), int(hours[0]), table)
            return int(table.num_rows)
        keys = partition.to_numpy(zero_copy_only=False)
        groups: dict[tuple[str, int], list[int]] = {}
        for index, (key, hour) in enumerate(zip(keys, hours, strict=True)):
            groups.setdefault((str(key), int(hour)), []).append(index)
        for (key, hour), rows in groups.items():
            self._write(kind, key, hour, table.take(np.asarray(rows)))
        return int(table.num_rows)

    def _write(self, kind: EventKind, key: str, hour: int, table: pa.Table) -> None:
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(hours=hour)
        folder = self.key_folder(kind, key) / hour_folder_name(start)
        name = f"part-{uuid.uuid4().hex}"
        temp = folder / f".{name}{_TEMP_SUFFIX}"
        try:
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                _fsync_dir(folder.parent)
            with temp.open("wb") as sink:
                _write_parquet(kind, table, sink)
                sink.flush()
                os.fsync(sink.fileno())
            temp.rename(folder / f"{name}.parquet")
            _fsync_dir(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StorageUnavailable(f"writing events to {folder} failed: {exc}") from exc

    # ------------------------------------------------------------------ reads
    def read(self, kind: EventKind, key: str, start: datetime, end: datetime) -> pa.Table:
        """Records of ``key`` with ``start <= time < end``, ordered; columns of files written
        with different payloads are united by name (absent values are null)."""
        files = self.files(kind, key, start, end)
        if not files:
            return empty(kind)
        order = ", ".join(f'"{c}"' for c in kind.order_by)
        connection = duckdb.connect()
        try:
            connection.execute("SET TimeZone='UTC'")
            relation = connection.sql(
                "SELECT * FROM read_parquet($files, union_by_name=true, hive_partitioning=false)"
                f" WHERE time >= $start AND time < $end ORDER BY {order}",
                params={"files": [str(f) for f in files], "start": start, "end": end},
            )
            table = relation.to_arrow_table()
        except duckdb.IOException as exc:
            raise StorageUnavailable(f"reading events from {self.root} failed: {exc}") from exc
        finally:
            connection.close()
        return conform(kind, table)

    # -------------------------------------------------------------- retention
    def delete_before(self, kind: EventKind, cutoff: datetime) -> int:
        """Delete every hour folder that ends at or before ``cutoff``; returns the rows."""
        check_time(cutoff, "cutoff")
        base = self.root / kind.name
        if not base.is_dir():
            return 0
        deleted = 0
        for hour_folder in sorted(base.glob("*=*/hour=*")):
            hour = _hour_of(hour_folder)
            if hour is None or hour + timedelta(hours=1) > cutoff:
                continue
            trash = base / f".trash-{uuid.uuid4().hex}"
            try:
                hour_folder.rename(trash)
            except FileNotFoundError:
                continue  # another process deleted it first
            for file in complete_files(trash):
                with contextlib.suppress(OSError, pa.ArrowInvalid):
                    deleted += pq.read_metadata(file).num_rows
            shutil.rmtree(trash, ignore_errors=True)
        return deleted

    # ------------------------------------------------------------------- salt
    def salt(self) -> bytes:
        """The log's secret salt for hashed columns, made once (first caller wins)."""
        path = self.root / "salt"
        with contextlib.suppress(FileNotFoundError):
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f".salt-{uuid.uuid4().hex}.tmp"
        with temp.open("w", encoding="ascii") as sink:
            sink.write(secrets.token_hex(32))
            sink.flush()
            os.fsync(sink.fileno())
        temp.chmod(0o600)
        try:
            os.link(temp, path)  # atomic, and fails if another process made it first
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        return bytes.fromhex(path.read_text(encoding="ascii").strip())

    def close(self) -> None:
        return None
