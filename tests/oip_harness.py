"""A real ``shipyard serve`` process for protocol tests: models, ports, start, readiness, stop.

The server runs as ``python -m shipyard.cli.app serve --config ...`` in a subprocess with its
own SHIPYARD_HOME, on free loopback ports, so that client libraries whose generated protobuf
modules clash with ours (tritonclient, KServe) can talk to it from another process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from shipyard import Settings, Workspace

RNG = np.random.default_rng(0)
NUMERIC = pd.DataFrame(RNG.normal(size=(60, 3)), columns=["a", "b", "c"])
LABELS = (NUMERIC["a"] + NUMERIC["b"] > 0).astype(int)
MIXED = pd.DataFrame(
    {
        "city": RNG.choice(["paris", "oslo", "rome"], size=60),
        "age": RNG.integers(18, 80, size=60).astype(np.int64),
        "income": RNG.normal(50, 10, size=60),
    }
)
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Models:
    """The fitted models registered in the server's workspace, to compute expected answers.

    ``num``: numeric columns a, b, c → one FP64 matrix input ``input`` [-1, 3], FP64 [-1, 2];
    ``mixed``: city (BYTES), age (INT64), income (FP64) inputs, FP64 [-1, 2];
    ``label``: numeric columns → string labels ("" or "yes"), a BYTES output.
    """

    num: Any
    mixed: Any
    label: Any

    def num_proba(self, rows: Any) -> np.ndarray[Any, Any]:
        frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(NUMERIC.columns))
        return np.asarray(self.num.predict_proba(frame))


def mixed_model() -> Any:
    """A Pipeline over string, integer and float columns (one-hot city + logistic regression)."""
    encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    return make_pipeline(encode, LogisticRegression(max_iter=500)).fit(MIXED, LABELS)


def register_models(home: Path) -> Models:
    workspace = Workspace(Settings(home=home, user="t"))
    num = LogisticRegression().fit(NUMERIC, LABELS)
    workspace.register_model("num", num, input_example=NUMERIC.head(3))
    workspace.registry.set_alias("num", "production", 1)
    mixed = mixed_model()
    workspace.register_model("mixed", mixed, input_example=MIXED.head(3))
    label = RidgeClassifier().fit(NUMERIC, np.where(LABELS == 1, "yes", ""))
    workspace.register_model("label", label, input_example=NUMERIC.head(3))
    workspace.close()
    return Models(num, mixed, label)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    rest_url: str
    grpc_address: str
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def _wait(server: Server, until: Callable[[httpx.Response], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.rest_url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{server.log_tail()}")
            try:
                if until(client.get("/v2/health/ready")):
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"server not up within {START_TIMEOUT_S} s:\n{server.log_tail()}"
                )
            time.sleep(0.05)


@contextmanager
def serve(
    home: Path,
    deployments: list[dict[str, Any]],
    *,
    wait_ready: bool = True,
    env: dict[str, str] | None = None,
    **config: Any,
) -> Iterator[Server]:
    """Run ``shipyard serve`` until the block ends (then SIGTERM, and SIGKILL if it hangs).

    Waits for ``/v2/health/ready`` to answer 200 (``wait_ready``) or to answer at all.
    """
    rest_port, grpc_port = free_port(), free_port()
    config_path = home.parent / f"serve-{rest_port}.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {"deployments": deployments, "port": rest_port, "grpc_port": grpc_port, **config}
        ),
        encoding="utf-8",
    )
    log = home.parent / f"serve-{rest_port}.log"
    environment = {**os.environ, "SHIPYARD_HOME": str(home), **(env or {})}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli.app", "serve", "--config", str(config_path)],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", log)
    try:
        _wait(server, (lambda r: r.status_code == 200) if wait_ready else (lambda r: True))
        yield server
    finally:
        stop(server)


def stop(server: Server, timeout_s: float = 30.0) -> int:
    """SIGTERM the server and wait for it to exit (SIGKILL after ``timeout_s``)."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
