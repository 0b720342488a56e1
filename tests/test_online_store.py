"""The online feature store contract, run against every backend (SQLite and Redis)."""

from __future__ import annotations

import random
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from shipyard.errors import InvalidInput, StorageUnavailable
from shipyard.storage.online import (
    OnlineRow,
    OnlineStore,
    SQLiteOnlineStore,
    open_online_store,
)

StoreOpener = Callable[[], OnlineStore]


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis")])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opens stores on one backend location (so a second one sees what the first wrote)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'online.db'}"
    else:
        url = request.getfixturevalue("redis_url")
    opened: list[OnlineStore] = []

    def open_() -> OnlineStore:
        store = open_online_store(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreOpener) -> OnlineStore:
    return open_store()


@pytest.fixture
def new_view(store: OnlineStore) -> Iterator[Callable[[str], str]]:
    """Unique view names (the Redis database is shared), deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    made: list[str] = []

    def make(name: str = "v") -> str:
        made.append(f"{prefix}_{name}")
        return made[-1]

    yield make
    for view in made:
        store.delete_view(view)


def row(key: str, event_ts: float, created_ts: float = 0.0, **values: object) -> OnlineRow:
    return OnlineRow(key, event_ts, created_ts, values)


# ------------------------------------------------------------------------ values
def test_every_value_type_round_trips(store: OnlineStore, new_view: Callable[[str], str]) -> None:
    view = new_view("types")
    values = {
        "f64": 0.1 + 0.2,
        "tiny": 5e-324,
        "neg": -1234.5e200,
        "zero": 0.0,
        "int": 9_007_199_254_740_993,  # 2**53 + 1: not representable as a float
        "negint": -7,
        "yes": True,
        "no": False,
        "text": 'Zürich ☃ 東京 "quoted" \\ 🚢',
        "empty": "",
        "missing": None,
    }
    keys = ['["ü",1]', "[42]", "odd:/*?[]{} key"]
    rows = [OnlineRow(k, 1_700_000_000.123456, 1_700_000_001.5, values) for k in keys]
    assert store.write(view, rows) == 3

    got = store.read(view, keys)

    assert got == rows
    for found in got:
        assert found is not None
        assert {k: type(v) for k, v in found.values.items()} == {
            k: type(v) for k, v in values.items()
        }


def test_numpy_scalars_are_stored_as_plain_values_and_nan_as_none(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    store.write(
        view,
        [row("k", np.float64(2.0), f=np.float64(0.25), i=np.int64(3), b=np.bool_(True))],
    )
    store.write(view, [row("nan", 1.0, x=float("nan"), y=float("inf"))])

    found, nan = store.read(view, ["k", "nan"])

    assert found == row("k", 2.0, f=0.25, i=3, b=True)
    assert type(found.values["i"]) is int and type(found.values["b"]) is bool
    assert nan is not None and nan.values == {"x": None, "y": None}


# ------------------------------------------------------------------ upsert rules
def test_a_newer_row_replaces_and_an_older_one_is_ignored(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    assert store.write(view, [row("k", 10.0, x=1)]) == 1
    assert store.write(view, [row("k", 20.0, x=2)]) == 1
    assert store.write(view, [row("k", 15.0, 99.0, x=3)]) == 0

    assert store.read(view, ["k"]) == [row("k", 20.0, x=2)]


def test_equal_event_times_are_decided_by_created_ts(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    store.write(view, [row("k", 10.0, 2.0, x="created 2")])

    assert store.write(view, [row("k", 10.0, 1.0, x="created 1")]) == 0
    assert store.read(view, ["k"]) == [row("k", 10.0, 2.0, x="created 2")]
    assert store.write(view, [row("k", 10.0, 3.0, x="created 3")]) == 1
    assert store.read(view, ["k"]) == [row("k", 10.0, 3.0, x="created 3")]


def test_rewriting_the_same_rows_changes_nothing_but_a_correction_does(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    rows = [row(f"k{i}", 10.0 + i, 1.0, a=i, b="x") for i in range(3)]
    assert store.write(view, rows) == 3

    assert store.write(view, rows) == 0
    # the same values in another order are the same row
    assert store.write(view, [OnlineRow("k0", 10.0, 1.0, {"b": "x", "a": 0})]) == 0
    # same timestamps, different values: a corrected source, re-materialised
    assert store.write(view, [row("k1", 11.0, 1.0, a=-1, b="x")]) == 1
    assert store.read(view, ["k0", "k1", "k2"]) == [
        rows[0],
        row("k1", 11.0, 1.0, a=-1, b="x"),
        rows[2],
    ]


def test_one_write_with_repeated_keys_keeps_the_newest(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    rows = [row("k", 5.0, x=5), row("k", 7.0, x=7), row("k", 6.0, x=6)]

    assert store.write(view, rows) == 2  # 5 stored, then replaced by 7; 6 is older

    assert store.read(view, ["k"]) == [row("k", 7.0, x=7)]


def test_writing_nothing_changes_nothing(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    assert store.write(view, []) == 0
    assert store.read(view, []) == []


# --------------------------------------------------------------------- reading
def test_reads_follow_the_order_of_keys_with_duplicates_and_missing_keys(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    a, b, c = row("a", 1.0, x=1), row("b", 2.0, x=2), row("c", 3.0, x=3)
    store.write(view, [a, b, c])

    assert store.read(view, ["c", "nope", "a", "c", "a"]) == [c, None, a, c, a]
    assert store.read(view, ["nope"]) == [None]
    assert store.read(view, ["b"]) == [b]
    assert store.read(new_view("empty"), ["a", "b"]) == [None, None]


def test_views_are_isolated_even_when_one_name_prefixes_another(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    base = new_view("drivers")
    views = [base, f"{base}:x", f"{base}@v2", f"{base}.2"]
    for number, view in enumerate(views):
        store.write(view, [row("k", 1.0, n=number), row(f"only{number}", 1.0, n=number)])

    for number, view in enumerate(views):
        others = [f"only{n}" for n in range(len(views)) if n != number]
        assert store.read(view, ["k", f"only{number}", *others]) == [
            row("k", 1.0, n=number),
            row(f"only{number}", 1.0, n=number),
            *[None] * len(others),
        ]


def test_delete_view_removes_only_that_view(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view, neighbour = new_view("gone"), new_view("gone:kept")
    store.write(view, [row(f"k{i}", 1.0, x=i) for i in range(2_500)])
    store.write(neighbour, [row("k1", 1.0, x="kept")])

    assert store.delete_view(view) == 2_500

    assert store.read(view, ["k0", "k1", "k2499"]) == [None, None, None]
    assert store.read(neighbour, ["k1"]) == [row("k1", 1.0, x="kept")]
    assert store.delete_view(view) == 0
    assert store.write(view, [row("k1", 0.5, x="again")]) == 1  # older than the deleted row
    assert store.read(view, ["k1"]) == [row("k1", 0.5, x="again")]


def test_ten_thousand_rows_in_one_write(store: OnlineStore, new_view: Callable[[str], str]) -> None:
    view = new_view()
    rows = [
        row(f"[{i}]", 1_700_000_000.0 + i, 0.0, a=i * 0.5, b=i, c=str(i)) for i in range(10_000)
    ]

    assert store.write(view, rows) == 10_000

    keys = [r.key for r in reversed(rows)]
    assert store.read(view, keys) == list(reversed(rows))
    assert store.write(view, rows) == 0


def test_concurrent_writers_leave_the_newest_row_of_every_key(
    open_store: StoreOpener, new_view: Callable[[str], str]
) -> None:
    shared = open_store()  # threads of one process share a store, a second process has its own
    other = open_store()
    view = new_view()
    keys = [f"k{i}" for i in range(40)]
    generator = random.Random(7)
    writers: list[list[OnlineRow]] = []
    for writer in range(4):
        rows = [
            row(key, float(generator.randrange(1_000)), float(generator.randrange(3)), w=writer)
            for key in keys
            for _ in range(5)
        ]
        generator.shuffle(rows)
        writers.append(rows)
    start = threading.Barrier(len(writers))
    failures: list[BaseException] = []

    def write(rows: list[OnlineRow], store: OnlineStore) -> None:
        try:
            start.wait()
            for offset in range(0, len(rows), 7):
                store.write(view, rows[offset : offset + 7])
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(rows, other if n == 0 else shared))
        for n, rows in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    newest: dict[str, tuple[float, float]] = {}
    for rows in writers:
        for r in rows:
            newest[r.key] = max(newest.get(r.key, (-1.0, -1.0)), (r.event_ts, r.created_ts))
    found = shared.read(view, keys)
    assert [(r.event_ts, r.created_ts) if r else None for r in found] == [newest[k] for k in keys]
    # and each stored row is one that was written with those timestamps
    written = {(r.key, r.event_ts, r.created_ts, r.values["w"]) for rows in writers for r in rows}
    assert all(r is not None and (r.key, *newest[r.key], r.values["w"]) in written for r in found)


def test_concurrent_readers_see_whole_rows(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    keys = [f"k{i}" for i in range(50)]
    store.write(view, [row(k, 1.0, a=0, b=0) for k in keys])
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not stop.is_set():
            for found in store.read(view, keys):
                if found is None or found.values["a"] != found.values["b"]:
                    seen.append(repr(found))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for version in range(2, 40):
        store.write(view, [row(k, float(version), a=version, b=version) for k in keys])
    stop.set()
    for reader in readers:
        reader.join()

    assert seen == []
    assert store.read(view, ["k0"]) == [row("k0", 39.0, a=39, b=39)]


def test_a_reopened_store_has_the_rows(
    open_store: StoreOpener, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    first = open_store()
    first.write(view, [row("k", 3.0, 1.0, x="kept")])
    first.close()

    assert open_store().read(view, ["k", "other"]) == [row("k", 3.0, 1.0, x="kept"), None]


def test_after_close_every_call_is_storage_unavailable(
    open_store: StoreOpener, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    store = open_store()
    store.write(view, [row("k", 1.0, x=1)])
    errors: list[BaseException] = []

    def read_in_a_new_thread() -> None:
        try:
            store.read(view, ["k"])
        except BaseException as exc:
            errors.append(exc)

    store.close()

    for call in (
        lambda: store.read(view, ["k"]),
        lambda: store.read(view, ["k", "j"]),
        lambda: store.write(view, [row("k", 2.0, x=2)]),
        lambda: store.delete_view(view),
    ):
        with pytest.raises(StorageUnavailable, match="is closed"):
            call()
    thread = threading.Thread(target=read_in_a_new_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], StorageUnavailable)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("view", ["", "a/b", "a b", "a*", "ä", "x" * 201])
def test_a_bad_view_name_is_invalid_input(store: OnlineStore, view: str) -> None:
    with pytest.raises(InvalidInput, match="view name"):
        store.write(view, [row("k", 1.0, x=1)])
    with pytest.raises(InvalidInput, match="view name"):
        store.read(view, ["k"])
    with pytest.raises(InvalidInput, match="view name"):
        store.delete_view(view)


def test_bad_rows_are_invalid_input_and_write_nothing(
    store: OnlineStore, new_view: Callable[[str], str]
) -> None:
    view = new_view()
    with pytest.raises(InvalidInput, match=r"'bad'.*finite"):
        store.write(view, [row("good", 1.0, x=1), row("bad", float("nan"), x=1)])
    with pytest.raises(InvalidInput, match=r"'bad'.*JSON"):
        store.write(view, [row("good", 1.0, x=1), row("bad", 1.0, x=object())])

    assert store.read(view, ["good"]) == [None]


@pytest.mark.parametrize(
    "url",
    [
        "memcached://127.0.0.1:11211",
        "/var/lib/online.db",
        "sqlite://",
        "sqlite:///",
        "postgresql://x",
    ],
)
def test_an_unsupported_url_is_invalid_input_naming_it(url: str) -> None:
    with pytest.raises(InvalidInput, match="online store URL") as caught:
        open_online_store(url)
    assert url in caught.value.message
    assert caught.value.field == "SHIPYARD_ONLINE_STORE_URL"


def test_an_unsupported_url_is_named_without_its_password() -> None:
    with pytest.raises(InvalidInput) as caught:
        open_online_store("memcached://user:s3cret@host:1")
    assert "memcached://user:***@host:1" in caught.value.message
    assert "s3cret" not in caught.value.message


def test_an_unreachable_redis_is_storage_unavailable_naming_it_without_password() -> None:
    pytest.importorskip("redis")
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(StorageUnavailable) as caught:
        open_online_store(f"redis://user:s3cret@127.0.0.1:{port}/0")

    assert f"redis://user:***@127.0.0.1:{port}/0" in caught.value.message
    assert "s3cret" not in caught.value.message


# ----------------------------------------------------------------- SQLite only
def test_sqlite_url_paths_follow_the_metadata_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_online_store("sqlite:///rel/online.db")
    absolute = open_online_store(f"sqlite:///{tmp_path / 'abs' / 'online.db'}")
    try:
        assert isinstance(relative, SQLiteOnlineStore)
        assert relative.path.resolve() == tmp_path / "rel" / "online.db"
        assert isinstance(absolute, SQLiteOnlineStore)
        assert absolute.path == tmp_path / "abs" / "online.db"
        assert (tmp_path / "rel" / "online.db").exists()
    finally:
        relative.close()
        absolute.close()


def test_sqlite_uses_wal_so_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    store = SQLiteOnlineStore(path)
    store.write("v", [row("k", 1.0, x="committed")])
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer.execute("BEGIN EXCLUSIVE")  # blocks readers unless the database is in WAL mode
        writer.execute('UPDATE online_rows SET value = \'{"x": "uncommitted"}\'')
        # Read from a thread that has no connection yet, as a new server worker would.
        got: list[list[OnlineRow | None]] = []
        reader = threading.Thread(target=lambda: got.append(store.read("v", ["k"])))
        reader.start()
        reader.join(timeout=30)
        assert got == [[row("k", 1.0, x="committed")]]
    finally:
        writer.close()
        store.close()


# ------------------------------------------------------------------ Redis only
def test_redis_writes_survive_the_server_forgetting_the_script(redis_url: str) -> None:
    import redis

    store = open_online_store(redis_url)
    view = f"t{uuid.uuid4().hex[:12]}"
    try:
        store.write(view, [row("k", 1.0, x=1)])
        with redis.Redis.from_url(redis_url) as client:
            client.script_flush()  # as a restart would

        assert store.write(view, [row("k", 2.0, x=2), row("j", 1.0, x=3)]) == 2

        assert store.read(view, ["k", "j"]) == [row("k", 2.0, x=2), row("j", 1.0, x=3)]
    finally:
        store.delete_view(view)
        store.close()
