"""Running the server: uvicorn with a drain phase on SIGTERM, one or several worker processes.

On SIGTERM/SIGINT a worker first *drains*: readiness answers 503 (so load balancers stop sending)
while requests are still served, for ``drain_s``; then uvicorn stops accepting, lets in-flight
requests finish (bounded by ``shutdown_timeout_s``) and the process exits 0.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from shipyard.server.access_log import AccessLogMiddleware, JsonFormatter, access_logger
from shipyard.server.app import build_state, create_app
from shipyard.server.config import ServerConfig
from shipyard.server.state import ServerState
from shipyard.settings import Settings

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with readiness turned off ``drain_s`` before it stops accepting."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain, then stop gracefully (exit code 0); a second SIGINT forces."""
        if self._drain_until is not None:
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self.state.draining = True
        self._drain_until = time.monotonic() + self.state.config.drain_s
        logger.info(
            "signal %d: draining for %.1f s before shutdown", sig, self.state.config.drain_s
        )

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def _uvicorn_config(config: ServerConfig, state: ServerState) -> uvicorn.Config:
    app: ASGIApp = create_app(state)
    if config.access_log:
        app = AccessLogMiddleware(app)
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(config.shutdown_timeout_s),
        ssl_certfile=config.tls_cert_file,
        ssl_keyfile=config.tls_key_file,
        limit_concurrency=None,
        backlog=4096,
    )


def _run_worker(config_json: str, settings_json: str, sock: socket.socket | None) -> None:
    config = ServerConfig.model_validate_json(config_json)
    settings = Settings.model_validate_json(settings_json)
    state = build_state(config, settings)
    server = DrainingServer(_uvicorn_config(config, state), state)
    server.run(sockets=[sock] if sock is not None else None)


def serve(config: ServerConfig, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in ``config.workers`` processes sharing
    one listening socket (metrics aggregated through a shared multiprocess directory)."""
    settings_json = _settings_json(settings)
    _pin_native_threads(config.workers)
    if config.workers == 1:
        _run_worker(config.model_dump_json(), settings_json, None)
        return
    metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    sock = socket.create_server((config.host, config.port), backlog=4096)  # shared by the workers
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_run_worker, args=(config.model_dump_json(), settings_json, sock), daemon=False
        )
        for _ in range(config.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(sig: int, _: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)


def _pin_native_threads(workers: int) -> None:
    """Give each worker its share of the cores for OpenMP/BLAS pools (unless the user chose).

    Several workers each starting a full-size OpenMP team on shared cores collapse throughput
    (measured: 79 req/s with 2 x 2 threads on 2 cores, 30x more with 1 thread each).
    """
    per_worker = str(max(1, (os.cpu_count() or 1) // workers))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, per_worker)


def _settings_json(settings: Settings) -> str:
    """Settings for a worker process, secrets included (they never leave this machine)."""
    data = settings.model_dump(mode="json")
    for key in ("admin_token", "inference_token"):
        secret = getattr(settings, key)
        data[key] = None if secret is None else secret.get_secret_value()
    return json.dumps(data)
