"""The dynamic batcher on its own: merging, splitting, failures, and stopping without loss."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from shipyard.core.signature import Batch
from shipyard.server.batching import DynamicBatcher


def _rows(*values: float) -> Batch:
    return Batch.from_table(["x"], np.array([[v] for v in values]))


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows() -> None:
    calls: list[int] = []

    def predict(batch: Batch) -> np.ndarray[Any, Any]:
        calls.append(batch.num_rows)
        return batch.matrix()[:, 0] * 10

    async def scenario() -> list[np.ndarray[Any, Any]]:
        batcher = DynamicBatcher(predict, max_batch_size=64, max_wait_ms=50)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(_rows(i, i + 0.5)) for i in range(6)))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert [a.tolist() for a in answers] == [[i * 10, i * 10 + 5] for i in range(6)]
    assert sum(calls) == 12 and len(calls) < 6


def test_a_model_failure_reaches_every_request_of_the_batch() -> None:
    def predict(batch: Batch) -> np.ndarray[Any, Any]:
        raise RuntimeError("model broke")

    async def scenario() -> list[BaseException | np.ndarray[Any, Any]]:
        batcher = DynamicBatcher(predict, max_batch_size=64, max_wait_ms=20)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(_rows(i)) for i in range(3)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, RuntimeError) and str(o) == "model broke" for o in outcomes)


def test_stop_answers_what_is_already_queued() -> None:
    entered, release = threading.Event(), threading.Event()

    def predict(batch: Batch) -> np.ndarray[Any, Any]:
        entered.set()
        release.wait(10)
        return batch.matrix()[:, 0]

    async def scenario() -> list[np.ndarray[Any, Any]]:
        batcher = DynamicBatcher(predict, max_batch_size=2, max_wait_ms=0)
        batcher.start()
        pending = [asyncio.create_task(batcher.submit(_rows(i))) for i in range(5)]
        while not entered.is_set():  # the first group is in the model, the rest queued
            await asyncio.sleep(0.001)
        stopping = asyncio.create_task(batcher.stop())  # e.g. the version was swapped out
        release.set()
        await asyncio.wait_for(stopping, 10)
        return await asyncio.wait_for(asyncio.gather(*pending), 10)

    answers = asyncio.run(scenario())
    assert [a.tolist() for a in answers] == [[float(i)] for i in range(5)]
