"""In-process cost of one OIP v2 single-row request: shipyard's ASGI app against the floor's.

No sockets, no HTTP parsing: each app is called directly with the ASGI ``scope`` uvicorn would
build for wrk's request (``POST /v2/models/bc/infer``, the same headers and the same single-row
body as ``run.py``) and a ``receive``/``send`` pair that hands over the body and keeps the
answer. What is left is exactly the Python each server runs per request, which is where the
served rate at high concurrency differs (uvicorn's own work is the same for both).

- **shipyard**: the LightGBM model of ``training.py`` registered in a temporary workspace,
  converted by ``optimize_model`` (what ``shipyard models optimize`` does), alias ``production``
  moved to the ONNX version, served by ``create_app`` with the defaults ``shipyard serve bc@production``
  uses (metrics on, signature checks and the NaN/inf policy on). ``--multiprocess`` sets
  ``PROMETHEUS_MULTIPROC_DIR`` as ``shipyard serve --workers 2`` does (metrics in shared files).
- **floor**: ``floor.py`` on the ONNX file of ``training.to_onnx``.

Both answers are checked against ``predict_proba`` before timing. Rounds alternate the two apps;
the table shows the median and best round in CPU µs per request (this thread's CPU time, so
that other work on the machine disturbs less) and floor/shipyard (the share of the
floor's rate shipyard would reach if the Python per request were all that differed)::

    .venv/bin/python benchmarks/serving/inprocess.py [--requests 20000] [--rounds 7]
        [--multiprocess] [--profile N]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from training import Model, to_onnx, train  # noqa: E402

from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import deployment_from_uri, load_config

MODEL = "bc"
PATH = f"/v2/models/{MODEL}/infer"
Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def oip_body(rows: np.ndarray[Any, Any]) -> bytes:
    """The body ``run.py`` sends (servers.oip_body for one ``input`` tensor, compact JSON)."""
    tensor = {
        "name": "input",
        "shape": list(rows.shape),
        "datatype": "FP64",
        "data": rows.ravel().tolist(),
    }
    return orjson.dumps({"inputs": [tensor]})


def scope_for(body: bytes) -> dict[str, Any]:
    """The scope uvicorn (httptools) builds for wrk's request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


class Exchange:
    """One request's ``receive``/``send``: hands over the body once, keeps status and body."""

    __slots__ = ("body", "status", "answer")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 0
        self.answer = b""

    async def receive(self) -> Message:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.answer += message.get("body", b"")


async def call(app: App, scope: dict[str, Any], body: bytes) -> Exchange:
    exchange = Exchange(body)
    await app(dict(scope), exchange.receive, exchange.send)
    return exchange


async def run_many(app: App, scope: dict[str, Any], body: bytes, n: int) -> float:
    """CPU seconds per request over ``n`` sequential requests (what one worker's loop does);
    CPU time of this thread, so that other processes on a shared machine count less."""
    receive_message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> Message:
        return receive_message

    async def send(message: Message) -> None:
        return None

    started = time.thread_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.thread_time() - started) / n


def probabilities(answer: bytes) -> np.ndarray[Any, Any]:
    output = orjson.loads(answer)["outputs"][0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def shipyard_app(model: Model, home: Path) -> tuple[App, Any]:
    """``shipyard serve bc@production`` on the optimized (ONNX) version, as an ASGI app."""
    ws = Workspace(Settings(home=home))
    try:
        registered = ws.register_model(MODEL, model.estimator, input_example=model.features.head(5))
        optimized = ws.optimize_model(f"models:/{MODEL}/{registered.version}")
        ws.registry.set_alias(MODEL, "production", optimized.version.version)
    finally:
        ws.close()
    deployment = deployment_from_uri(f"{MODEL}@production").model_dump()
    state = build_state(load_config({"deployments": [deployment]}), Settings(home=home))
    return create_app(state), state


def floor_app(model: Model, folder: Path) -> App:
    onnx_path = folder / "model.onnx"
    to_onnx(model, onnx_path)
    os.environ["BENCH_ONNX_PATH"] = str(onnx_path)
    os.environ["BENCH_MODEL_NAME"] = MODEL
    floor = importlib.import_module("floor")
    return floor.app  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="metrics in PROMETHEUS_MULTIPROC_DIR files, as with shipyard serve --workers 2+",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile N shipyard requests"
    )
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="shipyard-inprocess-"))
    if args.multiprocess:
        metrics_dir = scratch / "metrics"
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    model = next(m for m in train() if m.name == "lightgbm")
    rows = model.features.head(1)
    body = oip_body(rows.to_numpy())
    expected = model.expected(rows)
    floor = floor_app(model, scratch)
    shipyard, state = shipyard_app(model, scratch / "home")
    scope = scope_for(body)

    async def bench() -> None:
        await state.start()
        try:
            for name, app in (("floor", floor), ("shipyard", shipyard)):
                exchange = await call(app, scope, body)
                if exchange.status != 200:
                    raise SystemExit(f"{name} answered {exchange.status}: {exchange.answer!r}")
                diff = float(np.abs(probabilities(exchange.answer) - expected).max())
                if diff > 1e-5:
                    raise SystemExit(f"{name} answered {exchange.answer!r}: off by {diff}")
            for app in (floor, shipyard):  # warm-up
                await run_many(app, scope, body, 2000)
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await run_many(shipyard, scope, body, args.profile)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
                return
            times: dict[str, list[float]] = {"floor": [], "shipyard": []}
            for _ in range(args.rounds):
                for name, app in (("floor", floor), ("shipyard", shipyard)):
                    times[name].append(await run_many(app, scope, body, args.requests))
            median = {k: statistics.median(v) * 1e6 for k, v in times.items()}
            best = {k: min(v) * 1e6 for k, v in times.items()}
            mode = "multiprocess metrics" if args.multiprocess else "in-memory metrics"
            print(f"{args.rounds} rounds of {args.requests} single-row requests, {mode}")
            print("| app | median CPU µs/request | best CPU µs/request |")
            print("| --- | ---: | ---: |")
            for name in ("floor", "shipyard"):
                print(f"| {name} | {median[name]:.1f} | {best[name]:.1f} |")
            print(
                f"floor/shipyard: {median['floor'] / median['shipyard']:.0%} (median), "
                f"{best['floor'] / best['shipyard']:.0%} (best)"
            )
        finally:
            await state.stop()

    if args.no_uvloop:
        asyncio.run(bench())
    else:
        uvloop.run(bench())


if __name__ == "__main__":
    main()
