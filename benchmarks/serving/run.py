"""Serving benchmark: `shipyard serve` against MLflow, BentoML and a bare ASGI + ONNX Runtime floor.

Every server gets the same trained model (breast cancer; scikit-learn HistGradientBoosting and
LightGBM), is started as a subprocess on a free loopback port, waited for, checked with one
request whose answer must be the model's ``predict_proba`` for those rows, driven with wrk (one
thread; single-row and 64-row payloads; 1, 8 and 64 connections) and stopped. Every server process
runs with ``OMP_NUM_THREADS=1``; the LightGBM model is set to ``n_jobs=1`` before it is handed to
anyone, as its scikit-learn wrapper ignores that variable.

``shipyard serve`` is measured when it exists and becomes ready; otherwise its rows say why.
Run by hand with the benchmark environment (see ``benchmarks/README.md``)::

    .venv-bench/bin/python benchmarks/serving/run.py                 # full run, about 40 minutes
    .venv-bench/bin/python benchmarks/serving/run.py --duration 3    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from report import Row, floor_share, markdown_table, summarize, summary_table, target_lines
from servers import (
    BIN,
    HERE,
    HOST,
    SHIPYARD_VARIANT_ARGS,
    BentoServer,
    FloorServer,
    MlflowServer,
    Server,
    ServerFailed,
    ShipyardServer,
    request_json,
)
from training import Model, to_onnx, train
from wrk import WRK_INSTALL, WRK_TIMEOUT, WrkFailed, run_wrk, wrk_script, wrk_version

RESULTS_DIR = HERE.parent / "results"
CONNECTIONS = (1, 8, 64)
PAYLOAD_ROWS = (1, 64)
WORKERS = (1, 2)
SERVER_ENV = {"OMP_NUM_THREADS": "1"}
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
ANSWER_ATOL = 1e-5  # the ONNX floor computes in float32
WARMUP_CONNECTIONS = 8
SERVERS = ("mlflow", "bentoml", "floor", "shipyard", "shipyard-onnx", "shipyard-batching")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise ServerFailed(f"exited with {process.returncode}: {log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise ServerFailed(f"not ready after {READY_TIMEOUT_S:.0f} s: {log_tail(log)}")


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it."""
    group = process.pid  # started with start_new_session: its own group
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or its zombie keeps the group alive
        if not group_alive(group):
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=HERE,
            # MLflow starts `uvicorn` by name: the venv's scripts must come first on PATH.
            env={
                **os.environ,
                "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
                **SERVER_ENV,
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
        if process.poll() is not None:
            raise ServerFailed(f"exited during the run ({process.returncode}): {log_tail(log)}")
    finally:
        stop(process)


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    warmup_s: float
    connections: tuple[int, ...]
    payload_rows: tuple[int, ...]
    workers: tuple[int, ...]
    servers: tuple[str, ...]
    shipyard_args: tuple[str, ...] = ()


def check_answer(server: Server, url: str, body: bytes, expected: np.ndarray[Any, Any]) -> None:
    """One request before the load: a server that answers wrongly must not post numbers."""
    got = server.probabilities(request_json(url, body))
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=ANSWER_ATOL):
        raise ServerFailed(f"wrong answer: {got.ravel()[:4]}… expected {expected.ravel()[:4]}…")


def bench(server: Server, model: Model, workers: int, plan: Plan, scratch: Path) -> list[Row]:
    """Start the server, check it, drive it at every payload × concurrency, stop it."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log = scratch / f"{re.sub(r'[^a-z0-9]+', '-', server.name.lower())}-{model.name}-{workers}.log"
    rows: list[Row] = []

    print(f"- {server.name} · {model.name} · {workers} worker(s), port {port}", flush=True)
    try:
        with running(server.command(port, workers), server.env(workers), log) as process:
            ready_s = wait_ready(process, base_url + server.ready_path, log)
            print(f"  ready after {ready_s:.1f} s", flush=True)
            infer_url = base_url + server.infer_path
            scripts = {}
            for n in plan.payload_rows:
                features = model.features.head(n)
                body = server.body(base_url, features)
                check_answer(server, infer_url, body, model.expected(features))
                scripts[n] = wrk_script(scratch, body)
            if plan.warmup_s > 0:
                warmup = scripts[min(plan.payload_rows)]
                run_wrk(infer_url, warmup, connections=WARMUP_CONNECTIONS, duration_s=plan.warmup_s)
            for n in plan.payload_rows:
                for c in plan.connections:
                    load = run_wrk(infer_url, scripts[n], connections=c, duration_s=plan.duration_s)
                    rows.append(Row(server.name, model.name, workers, n, c, load))
                    print(f"  {n:>2} row(s), c={c:<2}: {summarize(load)}", flush=True)
                    if process.poll() is not None:
                        raise ServerFailed(f"exited under load: {log_tail(log)}")
    except (ServerFailed, WrkFailed) as error:
        print(f"  failed: {error}", flush=True)
        return [*rows, Row(server.name, model.name, workers, None, None, None, str(error))]
    return rows


def build_servers(model: Model, folder: Path, plan: Plan) -> list[Server]:
    """Save the model for every server in ``plan`` (skipped ones are not prepared)."""
    servers: list[Server] = []
    folder.mkdir(parents=True)
    for name in plan.servers:
        if name == "mlflow":
            servers.append(MlflowServer.prepare(model, folder / "mlflow"))
        elif name == "bentoml":
            servers.append(BentoServer.prepare(model, folder.parent / "bentoml"))
        elif name == "floor":
            onnx_path = folder / "model.onnx"
            max_diff = to_onnx(model, onnx_path)
            print(f"  {model.name} as ONNX: max |Δp| {max_diff:.2e} over all rows", flush=True)
            servers.append(FloorServer(onnx_path))
        else:
            extra_args = SHIPYARD_VARIANT_ARGS.get(name, ()) + plan.shipyard_args
            onnx = name == "shipyard-onnx"
            servers.append(
                ShipyardServer.prepare(model, folder / name, onnx=onnx, extra_args=extra_args)
            )
    return servers


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes (``shipyard serve`` runs
    from it, editable)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def environment(plan: Plan) -> dict[str, Any]:
    packages = [
        "shipyard",
        "mlflow",
        "bentoml",
        "onnxruntime",
        "skl2onnx",
        "onnxmltools",
        "lightgbm",
        "scikit-learn",
        "numpy",
        "pandas",
        "uvicorn",
        "uvloop",
        "httptools",
        "orjson",
        "fastapi",
        "starlette",
    ]
    versions: dict[str, str | None] = {}
    for name in packages:
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
        "wrk": wrk_version(),
        "git": git_state(),
        "versions": versions,
        "server_env": SERVER_ENV,
        "lightgbm_n_jobs": 1,
        "wrk_threads": 1,
        "wrk_timeout": WRK_TIMEOUT,
        "answer_atol": ANSWER_ATOL,
        "plan": asdict(plan),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=list(CONNECTIONS), help="wrk -c values"
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=list(PAYLOAD_ROWS), help="rows per request"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=list(WORKERS), help="server processes"
    )
    parser.add_argument(
        "--models", nargs="+", choices=["sklearn-hgb", "lightgbm"], help="default: both"
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=SERVERS,
        default=list(SERVERS),
    )
    parser.add_argument(
        "--shipyard-arg",
        action="append",
        default=[],
        help="passed to `shipyard serve` as is (repeat it), e.g. --shipyard-arg=--max-wait-ms=1",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(f"wrk is not on PATH: {WRK_INSTALL}")
    plan = Plan(
        duration_s=args.duration,
        warmup_s=args.warmup,
        connections=tuple(args.connections),
        payload_rows=tuple(args.rows),
        workers=tuple(args.workers),
        servers=tuple(args.servers),
        shipyard_args=tuple(args.shipyard_arg),
    )
    meta = environment(plan)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-serving-bench-") as folder:
        scratch = Path(folder)
        for model in train():
            if args.models and model.name not in args.models:
                continue
            for server in build_servers(model, scratch / model.name, plan):
                reason = server.unavailable()
                if reason is not None:
                    print(f"- {server.name} · {model.name}: {reason}", flush=True)
                    rows.append(Row(server.name, model.name, None, None, None, None, reason))
                    continue
                for workers in plan.workers:
                    rows += bench(server, model, workers, plan, scratch)
    meta["load_average_after"] = os.getloadavg()
    table = markdown_table(rows)
    shares = floor_share(rows)
    targets = target_lines(rows)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    smoke = "-smoke" if plan.duration_s < 15 else ""
    output = RESULTS_DIR / f"serving-{stamp}{smoke}.json"
    payload = {
        **meta,
        "targets": targets,
        "rows": [
            {
                **asdict(r),
                "errors": None if r.load is None else r.load.errors,
                "of_floor": shares.get(i),
            }
            for i, r in enumerate(rows)
        ],
    }
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print()
    print(json.dumps(meta, indent=2))
    print()
    print(table)
    print("\nSingle-row summary (in brackets: share of the floor's req/s, same workers):\n")
    print(summary_table(rows))
    print("\nIssue 3 targets (single row, OIP v2 REST):")
    print("\n".join(targets))
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
