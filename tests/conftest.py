"""Shared test infrastructure: workspaces on every metadata backend and artifact store.

Services are found through environment variables with the machine's defaults:
``SHIPYARD_TEST_POSTGRES_URL`` (postgresql://root@127.0.0.1:5432/test),
``SHIPYARD_TEST_REDIS_URL`` (redis://127.0.0.1:6379/15) and ``SHIPYARD_TEST_S3_ENDPOINT`` (unset: a
moto S3 server is started on a loopback port for the session). A test needing a missing service is
skipped with the reason — except in CI (``CI=true``), where a missing service fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard import Settings, Workspace

POSTGRES_URL = os.environ.get("SHIPYARD_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# ------------------------------------------------------------------ PostgreSQL
@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        service_missing(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    engine = sa.create_engine(postgres_server.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


# ---------------------------------------------------------------------- Redis
@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis database. Tests share it: each keeps to its own key names and cleans up."""
    try:
        import redis
    except ImportError:
        service_missing("redis-py is not installed (pip install 'shipyard[redis]')")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.exceptions.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


# ------------------------------------------------------------------------- S3
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 API server on loopback: $SHIPYARD_TEST_S3_ENDPOINT, or moto's server started here."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    given = os.environ.get("SHIPYARD_TEST_S3_ENDPOINT")
    if given:
        yield given
        return
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        service_missing("no S3 API server: set SHIPYARD_TEST_S3_ENDPOINT or install moto[server]")
    port = _free_port()
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                service_missing(f"moto S3 server did not start on port {port}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_bucket_url(s3_endpoint: str) -> str:
    """A fresh bucket on the S3 server, as ``s3://bucket/prefix``."""
    import boto3

    bucket = f"shipyard-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/artifacts"


# ----------------------------------------------------------------- workspaces
WorkspaceFactory = Callable[..., Workspace]


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"home": tmp_path / "home", "user": "tester"}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def workspace(make_settings: Callable[..., Settings]) -> Iterator[Workspace]:
    """A workspace on the embedded defaults (SQLite + local folder) in a temporary home."""
    ws = Workspace(make_settings())
    yield ws
    ws.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite-local", id="sqlite-local"),
        pytest.param("postgres-local", id="postgres-local", marks=pytest.mark.postgres),
        pytest.param("sqlite-s3", id="sqlite-s3", marks=pytest.mark.s3),
    ]
)
def any_workspace(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Iterator[Workspace]:
    """The same workspace API on every metadata backend and artifact store."""
    overrides: dict[str, object] = {}
    if request.param.startswith("postgres"):
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    if request.param.endswith("s3"):
        overrides["artifacts_url"] = request.getfixturevalue("s3_bucket_url")
        overrides["s3_endpoint_url"] = request.getfixturevalue("s3_endpoint")
    ws = Workspace(make_settings(**overrides))
    yield ws
    ws.close()
