"""In-process cost of one OIP v2 single-row request: shipyard's ASGI app against the floor's.

No sockets and no HTTP parsing: each app is called directly with the ASGI ``scope`` uvicorn
builds for wrk's request (``POST /v2/models/bc/infer``, the same headers and single-row body as
``run.py``) and a ``receive``/``send`` pair that hands over the body. What is measured is the
Python each server runs per request, which is where their rates at high concurrency differ
(uvicorn's own work, the rest of each request's cost, is the same for both).

- **shipyard**: the LightGBM model of ``training.py`` registered in a workspace, converted by
  ``optimize_model`` (what ``shipyard models optimize`` does), alias ``production`` moved to the
  ONNX version, served by ``create_app`` with what ``shipyard serve bc@production`` uses: metrics
  on, signature checks and the NaN/inf policy on, the prediction log as configured by default
  (``--no-prediction-log`` turns it off). ``--multiprocess`` sets ``PROMETHEUS_MULTIPROC_DIR``,
  as ``shipyard serve --workers 2`` does (metrics written to shared files).
- **floor**: ``floor.py`` on the ONNX file of ``training.to_onnx``.

Both answers are checked against ``predict_proba`` first. Two measures:

- time (default): rounds alternate the two apps; the table gives the median and best round in
  CPU µs per request (this thread's CPU time: other work on a shared machine disturbs it less,
  and ``nice -n -20`` less still) and floor/shipyard, the share of the floor's rate shipyard
  would reach if the Python per request were all there was.
- ``--instructions``: instructions per request counted by valgrind's callgrind (deterministic,
  so small changes show on a busy machine; about a minute). Python's own work costs more time
  per instruction than ONNX Runtime's, so this ratio is higher than the time ratio.

``--profile N`` prints cProfile's view of N shipyard requests instead. ``--folder DIR`` keeps the
trained and registered model for the next run (training takes a while)::

    .venv/bin/python benchmarks/serving/inprocess.py --folder /tmp/inprocess
    .venv/bin/python benchmarks/serving/inprocess.py --folder /tmp/inprocess --instructions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import itertools
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop

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

    __slots__ = ("answer", "body", "status")

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
    for i in range(n):
        await app(dict(scope), receive, send)
        if i % 256 == 255:  # let the event loop run what requests scheduled (metrics, logs)
            await asyncio.sleep(0)
    return (time.thread_time() - started) / n


def probabilities(answer: bytes) -> np.ndarray[Any, Any]:
    output = orjson.loads(answer)["outputs"][0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def prepare(folder: Path) -> None:
    """Train the LightGBM model, write the floor's ONNX file, register and optimize it in a
    workspace (``folder/home``), and keep the request body and the expected answer; nothing
    when ``folder`` already holds them."""
    if (folder / "ready").exists():
        return
    # Imported here: LightGBM and scikit-learn are only needed to prepare (not under valgrind).
    from training import to_onnx, train

    model = next(m for m in train() if m.name == "lightgbm")
    rows = model.features.head(1)
    to_onnx(model, folder / "model.onnx")
    ws = Workspace(Settings(home=folder / "home"))
    try:
        registered = ws.register_model(MODEL, model.estimator, input_example=model.features.head(5))
        optimized = ws.optimize_model(f"models:/{MODEL}/{registered.version}")
        ws.registry.set_alias(MODEL, "production", optimized.version.version)
    finally:
        ws.close()
    (folder / "body.json").write_bytes(oip_body(rows.to_numpy()))
    np.save(folder / "expected.npy", model.expected(rows))
    (folder / "ready").touch()


class Apps:
    """The two apps on a prepared folder, with the request and the expected answer."""

    def __init__(self, folder: Path, *, prediction_log: bool) -> None:
        self.body = (folder / "body.json").read_bytes()
        self.expected = np.load(folder / "expected.npy")
        self.scope = scope_for(self.body)
        os.environ["BENCH_ONNX_PATH"] = str(folder / "model.onnx")
        os.environ["BENCH_MODEL_NAME"] = MODEL
        self.floor: App = importlib.import_module("floor").app
        # What `shipyard serve bc@production` serves, with its defaults.
        deployment = deployment_from_uri(f"{MODEL}@production").model_dump()
        settings = Settings(home=folder / "home")
        config: dict[str, Any] = {"deployments": [deployment]}
        if not prediction_log:
            config["prediction_log"] = {"enabled": False}
        self.state = build_state(load_config(config), settings)
        self.shipyard: App = create_app(self.state)
        self.by_name = {"floor": self.floor, "shipyard": self.shipyard}

    async def check(self) -> None:
        for name, app in self.by_name.items():
            exchange = await call(app, self.scope, self.body)
            if exchange.status != 200:
                raise SystemExit(f"{name} answered {exchange.status}: {exchange.answer!r}")
            diff = float(np.abs(probabilities(exchange.answer) - self.expected).max())
            if diff > 1e-5:
                raise SystemExit(f"{name} answered {exchange.answer!r}: off by {diff}")


async def measure_time(apps: Apps, requests: int, rounds: int, multiprocess: bool) -> None:
    times: dict[str, list[float]] = {"floor": [], "shipyard": []}
    for _ in range(rounds):
        for name, app in apps.by_name.items():
            times[name].append(await run_many(app, apps.scope, apps.body, requests))
    median = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    best = {k: min(v) * 1e6 for k, v in times.items()}
    mode = "multiprocess metrics" if multiprocess else "in-memory metrics"
    print(f"{rounds} rounds of {requests} single-row requests, {mode}")
    print("| app | median CPU µs/request | best CPU µs/request |")
    print("| --- | ---: | ---: |")
    for name in ("floor", "shipyard"):
        print(f"| {name} | {median[name]:.1f} | {best[name]:.1f} |")
    print(
        f"floor/shipyard: {median['floor'] / median['shipyard']:.0%} (median), "
        f"{best['floor'] / best['shipyard']:.0%} (best)"
    )


# Under callgrind, each app's requests run inside one C function of its own, whose inclusive
# instruction count is read afterwards: the floor's inside itertools.starmap, shipyard's inside
# filter (both only iterate here).
_TOGGLES = {"floor": "starmap_next", "shipyard": "filter_next"}


def callgrind_phases(apps: Apps, requests: int) -> None:
    """The measured part of ``--instructions`` (this process runs under valgrind)."""
    loop = uvloop.new_event_loop()
    loop.run_until_complete(apps.state.start())
    loop.run_until_complete(apps.check())
    for app in apps.by_name.values():
        loop.run_until_complete(run_many(app, apps.scope, apps.body, 200))
    # Instrumentation off until now (--instr-atstart=no): switch it on, spinning meanwhile so
    # that valgrind gets to read the command.
    control = subprocess.Popen(
        ["callgrind_control", "--instr=on", str(os.getpid())], stdout=subprocess.DEVNULL
    )
    while control.poll() is None:
        pass

    def run_floor() -> None:
        loop.run_until_complete(run_many(apps.floor, apps.scope, apps.body, requests))

    def run_shipyard() -> bool:
        loop.run_until_complete(run_many(apps.shipyard, apps.scope, apps.body, requests))
        return True

    for _ in itertools.starmap(run_floor, [()]):
        pass
    for _ in filter(lambda _: run_shipyard(), [None]):
        pass
    loop.run_until_complete(apps.state.stop())


def measure_instructions(
    folder: Path, requests: int, *, multiprocess: bool, prediction_log: bool
) -> None:
    """Instructions per request, counted by callgrind (deterministic, unlike time on a busy
    machine): the child process runs each app's requests, this one reads the counts."""
    out = folder / f"callgrind.{os.getpid()}.out"
    command = [
        *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"),
        *(sys.executable, __file__, "--folder", str(folder), "--requests", str(requests)),
        "--callgrind-child",
        *(["--multiprocess"] if multiprocess else []),
        *([] if prediction_log else ["--no-prediction-log"]),
    ]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts = {}
    for name, function in _TOGGLES.items():
        line = next(x for x in annotated.splitlines() if f":{function} [" in x)
        counts[name] = int(line.split()[0].replace(",", "")) / requests
    mode = "multiprocess metrics" if multiprocess else "in-memory metrics"
    print(f"{requests} single-row requests per app under callgrind, {mode}")
    print("| app | instructions/request |")
    print("| --- | ---: |")
    for name, count in counts.items():
        print(f"| {name} | {count:,.0f} |")
    print(f"floor/shipyard: {counts['floor'] / counts['shipyard']:.0%}")


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
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request with valgrind's callgrind instead of timing",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        help="keep the prepared model here and reuse it (default: a new temporary folder)",
    )
    parser.add_argument(
        "--no-prediction-log",
        dest="prediction_log",
        action="store_false",
        help="serve with prediction_log.enabled false (it is on by default)",
    )
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    folder = args.folder or Path(tempfile.mkdtemp(prefix="shipyard-inprocess-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.multiprocess:
        metrics_dir = Path(tempfile.mkdtemp(prefix="metrics-", dir=folder))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.callgrind_child:
        callgrind_phases(Apps(folder, prediction_log=args.prediction_log), args.requests)
        return
    prepare(folder)
    if args.instructions:
        measure_instructions(
            folder,
            args.requests,
            multiprocess=args.multiprocess,
            prediction_log=args.prediction_log,
        )
        return
    apps = Apps(folder, prediction_log=args.prediction_log)

    async def bench() -> None:
        await apps.state.start()
        try:
            await apps.check()
            for app in apps.by_name.values():  # warm-up
                await run_many(app, apps.scope, apps.body, 2000)
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await run_many(apps.shipyard, apps.scope, apps.body, args.profile)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
                return
            await measure_time(apps, args.requests, args.rounds, args.multiprocess)
        finally:
            await apps.state.stop()

    uvloop.run(bench())


if __name__ == "__main__":
    main()
