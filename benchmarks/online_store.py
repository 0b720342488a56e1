"""Online store benchmark: read latency and write throughput of each backend, in-process.

The shape is the feature store issue's: 10,000 entities with 5 float features each, keys encoded
the way the feature layer encodes them (``orjson.dumps([entity_id])``). Each read is timed on its
own (``perf_counter_ns`` around ``store.read``, so decoding the values is included); a write is
10,000 new rows in one ``store.write`` call, then the same 10,000 rows again (a re-run
materialisation, which must change nothing).

Run by hand from the repository root (any environment with shipyard and redis-py)::

    .venv/bin/python benchmarks/online_store.py                      # SQLite + Redis
    .venv/bin/python benchmarks/online_store.py --redis-url redis://127.0.0.1:6379/15 --quick

``measure_online_store`` is the reusable part (``benchmarks/features.py`` calls it).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from shipyard.storage.online import OnlineRow, OnlineStore, open_online_store

FEATURES = 5


@dataclass(frozen=True)
class OnlineStoreFigures:
    backend: str
    entities: int
    read_1_p50_ms: float
    read_1_p99_ms: float
    read_100_p50_ms: float
    read_100_p99_ms: float
    write_s: float  # ``entities`` new rows in one write, best of ``write_repeats``
    rewrite_s: float  # the same rows again (nothing changes), best of ``write_repeats``
    write_rows_per_s: float


def _rows(entities: int, seed: int) -> list[OnlineRow]:
    generator = random.Random(seed)
    now = time.time()
    return [
        OnlineRow(
            orjson.dumps([entity]).decode(),
            now - generator.random() * 7_200,
            0.0,
            {f"f{i}": generator.random() for i in range(FEATURES)},
        )
        for entity in range(entities)
    ]


def _percentile(samples_ns: Sequence[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def measure_online_store(
    store: OnlineStore,
    *,
    backend: str,
    entities: int = 10_000,
    single_reads: int = 5_000,
    batch_reads: int = 1_000,
    batch_size: int = 100,
    write_repeats: int = 3,
    seed: int = 0,
) -> OnlineStoreFigures:
    """Measure ``store`` in views of its own (deleted afterwards); returns the figures."""
    rows = _rows(entities, seed)
    keys = [r.key for r in rows]
    generator = random.Random(seed + 1)
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    write_s: list[float] = []
    rewrite_s: list[float] = []
    try:
        for repeat in range(write_repeats):
            view = f"{prefix}_w{repeat}"
            start = time.perf_counter()
            changed = store.write(view, rows)
            write_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            unchanged = store.write(view, rows)
            rewrite_s.append(time.perf_counter() - start)
            assert (changed, unchanged) == (entities, 0), (changed, unchanged)
            if repeat:
                store.delete_view(view)
        view = f"{prefix}_w0"
        for key in keys[:200]:  # warm up (connections, statement caches)
            store.read(view, [key])
        single: list[int] = []
        for _ in range(single_reads):
            one_key = [keys[generator.randrange(entities)]]
            start_ns = time.perf_counter_ns()
            store.read(view, one_key)
            single.append(time.perf_counter_ns() - start_ns)
        batch: list[int] = []
        for _ in range(batch_reads):
            chosen = generator.sample(keys, batch_size)
            start_ns = time.perf_counter_ns()
            found = store.read(view, chosen)
            batch.append(time.perf_counter_ns() - start_ns)
        assert all(r is not None for r in found)
    finally:
        for repeat in range(write_repeats):
            store.delete_view(f"{prefix}_w{repeat}")
    return OnlineStoreFigures(
        backend=backend,
        entities=entities,
        read_1_p50_ms=statistics.median(single) / 1e6,
        read_1_p99_ms=_percentile(single, 0.99),
        read_100_p50_ms=statistics.median(batch) / 1e6,
        read_100_p99_ms=_percentile(batch, 0.99),
        write_s=min(write_s),
        rewrite_s=min(rewrite_s),
        write_rows_per_s=entities / min(write_s),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args(argv)
    counts = {"single_reads": 500, "batch_reads": 100} if args.quick else {}
    with tempfile.TemporaryDirectory() as folder:
        urls = {"sqlite": f"sqlite:///{Path(folder) / 'online.db'}"}
        if not args.no_redis:
            urls["redis"] = args.redis_url
        for backend, url in urls.items():
            store = open_online_store(url)
            try:
                figures = measure_online_store(store, backend=backend, **counts)
            finally:
                store.close()
            print(json.dumps(asdict(figures)))


if __name__ == "__main__":
    main()
