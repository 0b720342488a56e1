"""Version allocation under concurrent registration from many processes."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard import Settings, Workspace

PROCESSES = 8
REGISTRATIONS = 25


def _register_many(settings: dict[str, str], barrier: Barrier, results: Queue[list[int]]) -> None:
    x = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2})
    model = LogisticRegression().fit(x, [0, 1, 0, 1, 0, 1])
    ws = Workspace(Settings(**settings))  # type: ignore[arg-type]
    barrier.wait()  # every process starts registering at the same moment
    versions = [
        ws.register_model("churn", model, input_example=x.head(2)).version
        for _ in range(REGISTRATIONS)
    ]
    ws.close()
    results.put(versions)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    values = {"home": str(tmp_path / "home"), "user": "tester"}
    if request.param == "postgres":
        values["database_url"] = request.getfixturevalue("postgres_url")
    return values


@pytest.mark.slow
def test_concurrent_registrations_get_every_version_exactly_once(settings: dict[str, str]) -> None:
    Workspace(Settings(**settings)).close()  # type: ignore[arg-type]  # create the schema once
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    queue: Queue[list[int]] = context.Queue()
    workers = [
        context.Process(target=_register_many, args=(settings, barrier, queue))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    allocated = [v for versions in results for v in versions]
    total = PROCESSES * REGISTRATIONS
    assert sorted(allocated) == list(range(1, total + 1))  # no gaps, no duplicates
    assert all(versions == sorted(versions) for versions in results)
    assert Counter(len(v) for v in results) == {REGISTRATIONS: PROCESSES}

    ws = Workspace(Settings(**settings))  # type: ignore[arg-type]
    stored = ws.registry.list_versions("churn")
    assert [v.version for v in stored] == list(range(1, total + 1))
    assert len({v.artifact.key for v in stored}) == total
    assert ws.registry.get_model("churn").latest_version == total
    for number in (1, total // 2, total):
        assert ws.load_model(f"models:/churn/{number}").predict({"a": [1.0], "b": [1.0]}).shape == (
            1,
            2,
        )
    ws.close()
