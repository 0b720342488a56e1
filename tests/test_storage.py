"""Storage: migrations on every database, and the artifact store contract on every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shipyard.errors import ArtifactCorrupted, Conflict, InvalidInput, NotFound
from shipyard.storage.artifacts import ArtifactStore, LocalArtifactStore, open_artifact_store
from shipyard.storage.database import head_revision, open_database
from shipyard.storage.schema import metadata


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'meta.db'}"


def test_migrations_create_exactly_the_declared_schema(database_url: str) -> None:
    database = open_database(database_url)
    try:
        assert database.current_revision() == head_revision()
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        database.upgrade()  # a second upgrade is a no-op
        assert database.current_revision() == head_revision()
    finally:
        database.close()


def test_sqlite_database_runs_in_wal_mode(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'meta.db'}")
    with database.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.close()


def test_unknown_database_scheme_names_the_setting() -> None:
    with pytest.raises(InvalidInput, match=r"SHIPYARD_DATABASE_URL|not supported"):
        open_database("mysql://x@localhost/db")


# ------------------------------------------------------------ artifact stores
@pytest.fixture(
    params=[pytest.param("local", id="local"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "s3":
        yield open_artifact_store(
            request.getfixturevalue("s3_bucket_url"),
            cache_dir=tmp_path / "cache",
            s3_endpoint_url=request.getfixturevalue("s3_endpoint"),
        )
    else:
        yield open_artifact_store(str(tmp_path / "artifacts"), cache_dir=tmp_path / "cache")


def _model_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 100)
    (root / "sub" / "config.json").write_text('{"a": 1}')
    return root


def test_put_then_local_path_round_trips_every_file(store: ArtifactStore, tmp_path: Path) -> None:
    source = _model_folder(tmp_path / "src")
    stored = store.put(source, "models/m/abc")
    assert sorted(f.path for f in stored.files) == ["sub/config.json", "weights.bin"]
    assert stored.size == 25600 + 8
    local = store.local_path(stored)
    assert (local / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
    assert (local / "sub" / "config.json").read_text() == '{"a": 1}'


def test_single_file_is_stored_inside_its_key(store: ArtifactStore, tmp_path: Path) -> None:
    file = tmp_path / "roc.txt"
    file.write_text("auc=0.9")
    stored = store.put(file, "runs/r1/roc.txt")
    assert (store.local_path(stored) / "roc.txt").read_text() == "auc=0.9"


def test_put_refuses_an_existing_key(store: ArtifactStore, tmp_path: Path) -> None:
    source = _model_folder(tmp_path / "src")
    store.put(source, "models/m/abc")
    with pytest.raises(Conflict, match="already exists"):
        store.put(source, "models/m/abc")


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "models/../../x", "a/../../b"])
def test_keys_are_confined_to_the_store(store: ArtifactStore, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInput, match="inside the store"):
        store.put(_model_folder(tmp_path / "src"), key)


def test_list_and_delete(store: ArtifactStore, tmp_path: Path) -> None:
    source = _model_folder(tmp_path / "src")
    before = datetime.now(UTC) - timedelta(minutes=5)
    store.put(source, "models/m/a")
    store.put(source, "models/m/b")
    listed = store.list_keys("models/m")
    assert set(listed) == {"models/m/a", "models/m/b"}
    assert all(t > before for t in listed.values())
    store.delete("models/m/a")
    assert set(store.list_keys("models/m")) == {"models/m/b"}
    assert store.list_keys("models/none") == {}
    with pytest.raises(NotFound):
        store.delete("models/m/a")


def test_local_store_detects_a_changed_byte(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    stored = store.put(_model_folder(tmp_path / "src"), "models/m/a")
    weights = store.path_of("models/m/a") / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match=r"weights.bin.*does not match its recorded sha256"):
        store.local_path(stored)


def test_local_store_detects_a_missing_file(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    stored = store.put(_model_folder(tmp_path / "src"), "models/m/a")
    (store.path_of("models/m/a") / "sub" / "config.json").unlink()
    with pytest.raises(ArtifactCorrupted, match="missing"):
        store.local_path(stored)


@pytest.mark.s3
def test_s3_store_verifies_downloads_and_its_cache(
    tmp_path: Path, s3_bucket_url: str, s3_endpoint: str
) -> None:
    import boto3

    store = open_artifact_store(
        s3_bucket_url, cache_dir=tmp_path / "cache", s3_endpoint_url=s3_endpoint
    )
    stored = store.put(_model_folder(tmp_path / "src"), "models/m/a")
    bucket, prefix = s3_bucket_url.removeprefix("s3://").split("/", 1)
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key=f"{prefix}/models/m/a/weights.bin", Body=b"tampered"
    )
    with pytest.raises(ArtifactCorrupted, match=r"weights\.bin"):
        store.local_path(stored)
    assert not (tmp_path / "cache" / "artifacts" / stored.digest).exists()  # nothing cached

    clean = store.put(_model_folder(tmp_path / "src2"), "models/m/b")
    cached = store.local_path(clean)
    (cached / "weights.bin").write_bytes(b"changed on disk")
    with pytest.raises(ArtifactCorrupted):
        store.local_path(clean)


def test_unknown_artifact_scheme_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"SHIPYARD_ARTIFACTS_URL|not supported"):
        open_artifact_store("ftp://host/x", cache_dir=tmp_path)
