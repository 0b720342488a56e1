"""What the prediction log costs the serving path: one shipyard app with logging off, one with
every request logged (``sample_rate: 1.0``), both serving the same model, driven in-process.

As ``serving/inprocess.py``: each app is called directly with the ASGI scope uvicorn builds for
``POST /v2/models/bc/infer`` and a one-row OIP v2 body (breast-cancer, 30 FP64 features), on
the LightGBM model of ``serving/training.py`` converted to ONNX by ``optimize_model`` (what
``shipyard models optimize`` does; ``--native`` serves the LightGBM booster itself). Each request
is followed by ``await asyncio.sleep(0)``, so that other tasks (the log's flusher) run between
requests as they do between socket reads in a real server; both apps get the same. Each round
ends with a flush of what is still queued, inside the round's time, so that every row the round
logged is converted and written (to Parquet, fsynced) within it.

Two measures:

- **time** (default): rounds alternate the two apps; per request, the *process* CPU time (every
  thread: the flusher's conversion to Arrow and its Parquet writes in a worker thread count), the
  event-loop thread's CPU time and the wall time; median and best round.
- **instructions** (``--instructions``): each app in its own process under Valgrind's callgrind,
  counting the instructions of one round (the event loop and the flush thread) — no noise from
  other work on the machine, which on a shared machine moves the time figures by ±10%.

After the timed rounds the logging app is shut down (final flush) and the rows in the log are
checked against the requests it answered: none dropped.

    .venv/bin/python benchmarks/prediction_log.py [--requests 20000] [--rounds 7] [--native]
    .venv/bin/python benchmarks/prediction_log.py --instructions [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.prediction_log import PredictionLog
from shipyard.server.state import ServerState
from shipyard.storage.events import PREDICTIONS, ParquetEventLog

HERE = Path(__file__).resolve().parent
MODEL = "bc"
Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Any, Any], Any]
WINDOW = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def prepare(home: Path, native: bool) -> None:
    """Register the model (ONNX unless ``native``) and keep the request in ``home``."""
    sys.path.insert(0, str(HERE / "serving"))
    from inprocess import oip_body, scope_for  # training libraries: imported here only
    from training import train

    model = next(m for m in train() if m.name == "lightgbm")
    ws = Workspace(Settings(home=home))
    try:
        registered = ws.register_model(MODEL, model.estimator, input_example=model.features.head(5))
        version = registered.version
        if not native:
            version = ws.optimize_model(f"models:/{MODEL}/{registered.version}").version.version
        ws.registry.set_alias(MODEL, "production", version)
    finally:
        ws.close()
    body = oip_body(model.features.head(1).to_numpy())
    (home / "request.pickle").write_bytes(pickle.dumps((scope_for(body), body)))


def app_for(home: Path, logging: bool, flush_interval_s: float = 5.0) -> tuple[App, ServerState]:
    config = load_config(
        {
            "deployments": [{"name": MODEL, "model": f"models:/{MODEL}@production"}],
            "prediction_log": {"enabled": logging, "flush_interval_s": flush_interval_s},
        }
    )
    state = build_state(config, Settings(home=home))
    return create_app(state), state


async def check_answer(app: App, scope: dict[str, Any], body: bytes) -> None:
    """One request, which must be answered 200 (a broken app cannot post fast numbers)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    if sent[0]["status"] != 200:
        raise SystemExit(f"the app answered {sent[0]['status']}: {sent[1]['body']!r}")


async def run_many(
    app: App, state: ServerState, scope: dict[str, Any], body: bytes, n: int
) -> tuple[float, ...]:
    """(process CPU s, event-loop thread CPU s, wall s) per request over ``n`` sequential
    requests and the flush of what they queued (each app's writes land in its own rounds)."""
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> Message:
        return message

    async def send(_: Message) -> None:
        return None

    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
        await asyncio.sleep(0)
    await state.predictions.flush()
    return (
        (time.process_time() - cpu) / n,
        (time.thread_time() - loop) / n,
        (time.perf_counter() - wall) / n,
    )


def timed(home: Path, requests: int, rounds: int) -> None:
    scope, body = pickle.loads((home / "request.pickle").read_bytes())
    apps = {"off": app_for(home, logging=False), "on": app_for(home, logging=True)}
    events = ParquetEventLog(home / "events")
    before = events.read(PREDICTIONS, MODEL, *WINDOW).num_rows  # from earlier runs
    answered = 0
    figures: dict[str, dict[str, list[float]]] = {
        name: {"off": [], "on": []} for name in ("cpu", "loop", "wall")
    }

    async def bench() -> None:
        nonlocal answered
        for app, state in apps.values():
            await state.start()
            await check_answer(app, scope, body)
        try:
            for app, state in apps.values():  # warm-up
                await run_many(app, state, scope, body, 2000)
            for _ in range(rounds):
                for name, (app, state) in apps.items():
                    cpu, loop, wall = await run_many(app, state, scope, body, requests)
                    figures["cpu"][name].append(cpu)
                    figures["loop"][name].append(loop)
                    figures["wall"][name].append(wall)
            answered = 2001 + rounds * requests
        finally:
            for _, state in apps.values():
                await state.stop()

    uvloop.run(bench())
    print(f"{rounds} rounds of {requests} one-row OIP v2 requests")
    print("| logging | process CPU µs/req (median, best) | event-loop thread CPU | wall |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("off", "on"):
        cells = [
            f"{statistics.median(f[name]) * 1e6:.1f}, {min(f[name]) * 1e6:.1f}"
            for f in figures.values()
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    for label, key in (("process CPU", "cpu"), ("loop thread CPU", "loop"), ("wall", "wall")):
        on, off = figures[key]["on"], figures[key]["off"]
        median = statistics.median(on) / statistics.median(off) - 1
        paired = statistics.median(a / b for a, b in zip(on, off, strict=True)) - 1
        print(f"cost of logging ({label}): {median:+.1%} (medians), {paired:+.1%} (paired rounds)")
    logged = events.read(PREDICTIONS, MODEL, *WINDOW).num_rows - before
    registry = apps["on"][1].metrics.registry
    dropped = registry.get_sample_value(
        "shipyard_prediction_log_dropped_total", {"model": MODEL, "reason": "queue_full"}
    )
    print(f"logged {logged} of {answered} answered requests; dropped: {dropped or 0:.0f}")


def counted_round(home: Path, logging: bool, requests: int) -> None:
    """One app, warmed up, then one round inside ``sys.call_tracing``: the function callgrind
    is told to count in (``--toggle-collect``), on the event-loop thread and, wrapped the same
    way for the round, in the flush thread's ``_write``."""
    scope, body = pickle.loads((home / "request.pickle").read_bytes())
    # Flushes by size (10,000 rows), as under load: Valgrind runs the program ~50x slower, so
    # the 5 s timer would flush every few dozen rows and count a busy server's costs wrongly.
    app, state = app_for(home, logging, flush_interval_s=3600.0)
    loop = uvloop.new_event_loop()
    loop.run_until_complete(state.start())
    loop.run_until_complete(check_answer(app, scope, body))
    loop.run_until_complete(run_many(app, state, scope, body, 2000))
    write = PredictionLog._write

    def counted_write(self: PredictionLog, pending: list[Any]) -> int:
        return int(sys.call_tracing(write, (self, pending)))

    PredictionLog._write = counted_write  # type: ignore[method-assign]
    sys.call_tracing(loop.run_until_complete, (run_many(app, state, scope, body, requests),))
    PredictionLog._write = write  # type: ignore[method-assign]
    loop.run_until_complete(state.stop())
    loop.close()


def instructions(home: Path, requests: int) -> None:
    counts = {}
    for name in ("off", "on"):
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=sys_call_tracing",
            f"--callgrind-out-file={home}/callgrind.{name}",
            sys.executable,
            __file__,
            "--home",
            str(home),
            "--count-round",
            name,
            "--requests",
            str(requests),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"callgrind run ({name}) failed:\n{done.stderr[-3000:]}")
        counts[name] = int(found.group(1)) / requests
    print(f"callgrind, one round of {requests} one-row OIP v2 requests per app (+ its flush)")
    print("| logging | instructions per request |")
    print("| --- | ---: |")
    for name, count in counts.items():
        print(f"| {name} | {count:,.0f} |")
    print(f"cost of logging (instructions): {counts['on'] / counts['off'] - 1:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--native", action="store_true", help="LightGBM itself, not ONNX")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--home", type=Path, help="a workspace prepared by an earlier run")
    parser.add_argument("--count-round", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    home = args.home
    if args.count_round is not None:
        counted_round(home, args.count_round == "on", args.requests)
        return
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="shipyard-predlog-")) / "home"
        prepare(home, args.native)
        print("LightGBM (native)" if args.native else "LightGBM → ONNX", f"in {home}")
    if args.instructions:
        instructions(home, args.requests)
    else:
        timed(home, args.requests, args.rounds)


if __name__ == "__main__":
    main()
