"""A process killed (SIGKILL) in the middle of ``register_model`` leaves a consistent registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from shipyard import Settings, Workspace

# Runs in a child process: registers once normally, then once more with a SIGKILL injected at
# the named point of the real code path.
CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    import numpy as np, pandas as pd
    from sklearn.linear_model import LogisticRegression
    from shipyard import Settings, Workspace
    from shipyard.storage import database
    from shipyard.storage.artifacts import local

    point = sys.argv[1]
    x = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2})
    model = LogisticRegression().fit(x, [0, 1, 0, 1, 0, 1])
    ws = Workspace(Settings(home=os.environ["HOME_DIR"], user="crash"))

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "loop":
        while True:
            ws.register_model("churn", model, input_example=x.head(2))
            print("registered", flush=True)
    ws.register_model("churn", model, input_example=x.head(2))
    if point == "mid-copy":
        copied = []
        real_copy = shutil.copyfile
        def copy_then_die(src, dst, *args, **kwargs):
            real_copy(src, dst, *args, **kwargs)
            copied.append(dst)
            if len(copied) == 2:
                die()
        local.shutil.copyfile = copy_then_die
    elif point == "before-commit":
        real_write = database.Database.write
        from contextlib import contextmanager
        @contextmanager
        def write_then_die(self):
            with real_write(self) as conn:
                yield conn
                die()  # the INSERTs ran; the COMMIT never happens
        database.Database.write = write_then_die
    ws.register_model("churn", model, input_example=x.head(2))
    print("not killed", flush=True)
    """
)


def _child(home: Path, point: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, point],
        env={**os.environ, "HOME_DIR": str(home)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _assert_consistent(home: Path) -> None:
    """Every version row has its verified files, orphans are collectable, the next call works."""
    ws = Workspace(Settings(home=home, user="check"))
    versions = ws.registry.list_versions("churn")
    numbers = [v.version for v in versions]
    assert numbers == list(range(1, len(numbers) + 1))
    for version in versions:
        prediction = ws.load_model(version.uri).predict({"a": [1.0], "b": [1.0]})
        assert prediction.shape == (1, 2)

    ws.registry.collect_garbage(grace=timedelta(0))
    referenced = {v.artifact.key for v in versions}
    assert set(ws.store.list_keys("models/churn")) == referenced

    after = ws.register_model(
        "churn", ws.load_model(versions[0].uri).model, input_example=ws.input_example(versions[0])
    )
    assert after.version == len(numbers) + 1
    assert ws.load_model(after.uri).predict({"a": [2.0], "b": [4.0]}).shape == (1, 2)
    ws.close()


@pytest.mark.parametrize("point", ["mid-copy", "before-commit"])
def test_kill_at_a_precise_point_of_register_model(tmp_path: Path, point: str) -> None:
    home = tmp_path / "home"
    child = _child(home, point)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, out
    ws = Workspace(Settings(home=home, user="check"))
    assert [v.version for v in ws.registry.list_versions("churn")] == [1]
    leftovers = set(ws.store.list_keys("models/churn")) - {
        ws.registry.get_version("churn", 1).artifact.key
    }
    assert len(leftovers) == 1  # the killed call's files: unreferenced, under a fresh key
    ws.close()
    _assert_consistent(home)


@pytest.mark.slow
@pytest.mark.parametrize("registrations_before_kill", [3, 7])
def test_kill_at_a_random_moment_while_registering(
    tmp_path: Path, registrations_before_kill: int
) -> None:
    home = tmp_path / "home"
    child = _child(home, "loop")
    assert child.stdout is not None
    for _ in range(registrations_before_kill):
        assert child.stdout.readline().strip() == "registered"
    child.send_signal(signal.SIGKILL)  # lands wherever the next registration happens to be
    child.wait(timeout=30)
    child.stdout.close()
    _assert_consistent(home)
