"""The server as users run it: a real process on a loopback port, signals, several workers."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from oip_harness import free_port
from serving_models import Slow
from shipyard import Settings, Workspace

X = pd.DataFrame({"a": np.linspace(-1, 1, 30), "b": np.linspace(1, -1, 30) ** 2})
Y = (X["a"] > 0).astype(int)
ROW = {"instances": [{"a": 0.3, "b": 0.1}]}

pytestmark = pytest.mark.slow


def _start(
    home: Path, *args: str, scheme: str = "http", verify: ssl.SSLContext | bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SHIPYARD_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli.app", "serve", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "exited")
            try:
                if (
                    httpx.get(f"{base}/v2/health/ready", timeout=1, verify=verify).status_code
                    == 200
                ):
                    return process, base
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready within 60 s")
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    ws = Workspace(Settings(home=tmp_path / "home"))
    ws.register_model("num", LogisticRegression(C=0.1).fit(X, Y), input_example=X.head(2))
    ws.register_model("num", LogisticRegression(C=10.0).fit(X, Y), input_example=X.head(2))
    ws.registry.set_alias("num", "production", 1)
    ws.register_model("slow", Slow(), input_example=X.head(2))
    ws.close()
    yield tmp_path / "home"


def test_alias_move_under_load_swaps_versions_with_no_failed_request(home: Path) -> None:
    process, base = _start(home, "num@production", "--reload-interval", "0.1")
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(20_000):  # bounded; stops as soon as the swap is seen
                if stop.is_set():
                    return
                response = client.post("/v1/models/num:predict", json=ROW)
                statuses.append(response.status_code)
                versions.add(response.json().get("model_version", "?"))

    try:
        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        while len(statuses) < 200:
            time.sleep(0.01)
        ws = Workspace(Settings(home=home))
        ws.registry.set_alias("num", "production", 2)
        ws.close()
        deadline = time.monotonic() + 30
        while "2" not in versions and time.monotonic() < deadline:
            time.sleep(0.01)
        settle = len(statuses) + 200
        while len(statuses) < settle and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        stop.set()
        _stop(process)
    assert versions == {"1", "2"}
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_sigterm_drains_finishes_in_flight_requests_and_exits_zero(home: Path) -> None:
    process, base = _start(home, "slow/1", "--drain-s", "1.0")
    body = {"instances": [{"a": 7.0, "b": 300.0}]}  # each request takes 300 ms
    results: list[int] = []

    def call() -> None:
        results.append(
            httpx.post(f"{base}/v1/models/slow:predict", json=body, timeout=30).status_code
        )

    try:
        in_flight = [threading.Thread(target=call) for _ in range(4)]
        for thread in in_flight:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the server holds the requests
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
            if 'shipyard_in_flight_requests{model="slow"} 4.0' in metrics:
                break
            time.sleep(0.01)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        ready = httpx.get(f"{base}/v2/health/ready", timeout=5)
        live = httpx.get(f"{base}/v2/health/live", timeout=5)
        during_drain = httpx.post(
            f"{base}/v1/models/slow:predict", json={"instances": [{"a": 1.0, "b": 1.0}]}, timeout=5
        )
        for thread in in_flight:
            thread.join(timeout=30)
        exit_code = process.wait(timeout=30)
        took = time.monotonic() - sent_at
    finally:
        _stop(process)
    assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
    assert live.status_code == 200
    assert during_drain.status_code == 200  # still served while load balancers catch up
    assert results == [200, 200, 200, 200]
    assert exit_code == 0
    assert 1.0 <= took < 15


def test_metrics_add_up_across_worker_processes(home: Path) -> None:
    process, base = _start(home, "num/1", "--workers", "2")
    try:
        sent = 60
        for _ in range(sent):  # new connection each time: both workers get some
            assert (
                httpx.post(f"{base}/v1/models/num:predict", json=ROW, timeout=10).status_code == 200
            )
        scrapes = [httpx.get(f"{base}/metrics", timeout=5).text for _ in range(4)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        _stop(process)
    line = 'shipyard_requests_total{code="200",model="num",protocol="rest",version="1"} 60.0'
    assert all(line in text for text in scrapes)


def test_tls_serves_https_with_the_given_certificate(home: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, "-keyout", str(key), "-out", str(cert), *names], check=True, capture_output=True
    )
    trust = ssl.create_default_context(cafile=str(cert))
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    process, base = _start(home, "num/1", *tls, scheme="https", verify=trust)
    try:
        answer = httpx.post(f"{base}/v1/models/num:predict", json=ROW, verify=trust, timeout=10)
        plain = base.replace("https://", "http://")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{plain}/v2/health/live", timeout=5)
    finally:
        _stop(process)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
