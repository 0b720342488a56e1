"""Tracked runs: what they record, how they fail, and what they capture automatically."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from shipyard import Settings, Workspace, seed_everything
from shipyard.errors import Conflict, InvalidInput
from shipyard.records import RunStatus


def test_a_run_records_params_metrics_tags_and_datasets(workspace: Workspace) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]})
    with workspace.start_run("churn", name="baseline", tags={"team": "growth"}) as run:
        run.log_params({"lr": 0.1, "depth": 6})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metrics({"loss": loss}, step=step)
        run.log_metric("auc", 0.88)
        dataset = run.log_dataset(frame, "train")
    stored = workspace.tracker.get_run(run.run_id)
    assert stored.status is RunStatus.FINISHED
    assert stored.end_time is not None and stored.end_time >= stored.start_time
    assert (stored.experiment, stored.name, stored.user) == ("churn", "baseline", "tester")
    assert stored.params == {"lr": "0.1", "depth": "6"}
    assert stored.metrics == {"loss": 0.3, "auc": 0.88}  # latest step per key
    assert stored.tags == {"team": "growth"}
    assert stored.datasets == (dataset,)
    assert dataset.num_rows == 3
    assert dataset.schema == {"x": "float64", "label": "string"}
    assert len(dataset.fingerprint) == 64
    assert [r.run_id for r in workspace.tracker.list_runs("churn")] == [run.run_id]
    assert workspace.tracker.list_experiments() == ["churn"]


def test_a_parameter_keeps_its_first_value(workspace: Workspace) -> None:
    with workspace.start_run("churn") as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)  # same value: fine
        with pytest.raises(Conflict, match=r"'lr'.*cannot change"):
            run.log_param("lr", 0.2)


def test_bad_metric_values_name_the_metric(workspace: Workspace) -> None:
    with workspace.start_run("churn") as run:
        with pytest.raises(InvalidInput, match="'auc' must be a number"):
            run.log_metrics({"auc": "high"})
        with pytest.raises(InvalidInput, match="step must be an integer"):
            run.log_metric("auc", 0.5, step=1.5)  # type: ignore[arg-type]
    assert workspace.tracker.get_run(run.run_id).metrics == {}


def test_a_run_that_raises_is_marked_failed_with_the_error(workspace: Workspace) -> None:
    with pytest.raises(ZeroDivisionError), workspace.start_run("churn") as run:
        run.log_param("lr", 0.1)
        _ = 1 / 0
    stored = workspace.tracker.get_run(run.run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.error == "ZeroDivisionError: division by zero"
    assert stored.params == {"lr": "0.1"}
    with pytest.raises(Conflict, match="has ended"):
        run.log_param("more", 1)


def test_artifacts_are_stored_with_checksums_and_confined(
    workspace: Workspace, tmp_path: Path
) -> None:
    report = tmp_path / "report.txt"
    report.write_text("precision 0.9")
    with workspace.start_run("churn") as run:
        stored = run.log_artifact(report)
        run.log_text("hello", "notes/readme.md")
        with pytest.raises(InvalidInput, match="inside the store"):
            run.log_artifact(report, "../../escape.txt")
        with pytest.raises(InvalidInput, match="existing file"):
            run.log_artifact(tmp_path / "missing.txt")
    artifacts = workspace.tracker.get_run(run.run_id).artifacts
    assert [a.path for a in artifacts] == ["notes/readme.md", "report.txt"]
    assert stored.key == f"runs/{run.run_id}/report.txt"
    home = workspace.settings.resolved_artifacts_url
    assert (Path(home) / stored.key / "report.txt").read_text() == "precision 0.9"
    assert not list(Path(home).rglob(".tmp-*"))  # the failed calls left nothing behind


def test_seed_everything_makes_random_numpy_and_torch_repeat(workspace: Workspace) -> None:
    def draw() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    with workspace.start_run("churn") as run:
        seed_everything(7)
    assert workspace.tracker.get_run(run.run_id).seed == 7
    with pytest.raises(ValueError, match="seed must be an integer"):
        seed_everything(-1)


def test_git_commit_and_dirty_flag_of_the_callers_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    script = repo / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import shipyard
            with shipyard.start_run("exp") as run:
                pass
            info = run.info
            print(info.git_commit, info.git_dirty)
            """
        )
    )
    git("add", "train.py")
    git("commit", "-qm", "init")
    env = {**os.environ, "SHIPYARD_HOME": str(tmp_path / "home")}

    def run_script() -> list[str]:
        out = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert run_script() == [git("rev-parse", "HEAD"), "False"]
    script.write_text(script.read_text() + "\n# edited\n")
    assert run_script() == [git("rev-parse", "HEAD"), "True"]


def test_runs_outside_a_repository_record_no_commit(tmp_path: Path) -> None:
    ws = Workspace(Settings(home=tmp_path / "home"))
    run = ws.tracker.start_run("exp", code_dir=tmp_path)
    run.end()
    info = ws.tracker.get_run(run.run_id)
    assert (info.git_commit, info.git_dirty) == (None, None)
    assert info.python_version == f"{sys.version_info.major}.{sys.version_info.minor}." + str(
        sys.version_info.micro
    )
    assert info.packages["numpy"] == np.__version__
    ws.close()
