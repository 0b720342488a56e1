"""Deployment strategies and experiments in the metadata DB, on SQLite and PostgreSQL: audit log,
compare-and-set under concurrent controllers, the experiment life cycle, and clear errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from shipyard import Conflict, InvalidInput, NotFound, Settings, Workspace
from shipyard.experiments.spec import Canary, Single, parse_strategy

CANARY = {
    "type": "canary",
    "baseline": "churn@production",
    "candidate": "churn/2",
    "schedule": [{"weight": 0.05, "min_exposures": 100}, {"weight": 0.5}],
}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def ws(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Iterator[Workspace]:
    overrides: dict[str, object] = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    workspace = Workspace(make_settings(**overrides))
    yield workspace
    workspace.close()


def test_every_change_bumps_the_revision_and_is_audit_logged(ws: Workspace) -> None:
    rollouts = ws.rollouts
    assert rollouts.state("churn") is None
    first = rollouts.set_strategy("churn", {"type": "single", "model": "churn/1"}, actor="ann")
    bg = rollouts.set_strategy(
        "churn", {"type": "blue_green", "blue": "churn/1", "green": "churn/2"}, reason="r2"
    )
    switched = rollouts.switch("churn", actor="bob", reason="go")
    back = rollouts.switch("churn")
    assert [s.revision for s in (first, bg, switched, back)] == [1, 2, 3, 4]
    assert first.salt == back.salt  # a deployment keeps its salt
    state = rollouts.state("churn")
    assert state is not None and state.revision == 4
    assert state.strategy.type == "blue_green" and state.strategy.live == "blue"  # type: ignore[union-attr]
    history = rollouts.history("churn")
    assert [(c.revision, c.action, c.actor) for c in history] == [
        (4, "switch-blue", None),
        (3, "switch-green", "bob"),
        (2, "set", None),
        (1, "set", "ann"),
    ]
    assert history[2].reason == "r2" and history[1].strategy["live"] == "green"


def test_concurrent_controllers_land_exactly_one_change(ws: Workspace) -> None:
    rollouts = ws.rollouts
    state = rollouts.set_strategy("churn", CANARY, weights=[0.95, 0.05])
    results: list[str] = []

    def step(weight: float) -> None:
        try:
            rollouts.set_weights("churn", [1 - weight, weight], expected_revision=state.revision)
            results.append("landed")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=step, args=(0.1 + i / 100,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict"] * 7 + ["landed"]
    after = rollouts.state("churn")
    assert after is not None and after.revision == state.revision + 1
    assert len(rollouts.history("churn")) == 2


def test_the_experiment_life_cycle(ws: Workspace) -> None:
    rollouts = ws.rollouts
    experiment = rollouts.create("exp", "churn", CANARY)
    assert experiment.status == "created" and experiment.step == -1
    assert experiment.salt.startswith("exp-")
    with pytest.raises(Conflict):
        rollouts.create("exp", "churn", CANARY)
    state = rollouts.start("exp")
    assert state.experiment == "exp" and state.weights == (0.95, 0.05)
    assert state.salt == experiment.salt  # assignment keys on the experiment's salt
    assert isinstance(state.strategy, Canary)
    rollouts.create("other", "churn", CANARY)
    with pytest.raises(Conflict, match="already runs experiment 'exp'"):
        rollouts.start("other")
    now = datetime.now(UTC)
    stepped = rollouts.advance("exp", 1, [0.5, 0.5], expected_revision=state.revision, now=now)
    assert stepped.weights == (0.5, 0.5) and rollouts.experiment("exp").step == 1
    rollouts.record("exp", 1, "step", {"weights": [0.5, 0.5]})
    done = rollouts.finish("exp", "promoted", "models:/churn/2", now=now)
    assert isinstance(done.strategy, Single) and done.experiment is None
    assert rollouts.experiment("exp").status == "promoted"
    assert [d.action for d in rollouts.decisions("exp")] == ["step"]
    with pytest.raises(Conflict, match="is promoted, not running"):
        rollouts.advance("exp", 1, [0, 1], expected_revision=done.revision, now=now)
    assert [c.action for c in rollouts.history("churn")] == ["promoted", "step", "start"]


def test_bad_strategies_name_the_field(ws: Workspace) -> None:
    cases = [
        ({"type": "canary", "baseline": "a@b"}, "candidate"),
        ({**CANARY, "schedule": [{"weight": 0.5}, {"weight": 0.2}]}, "schedule"),
        ({"type": "ab_test", "variants": [{"name": "a", "model": "m/1"}] * 2}, "variants"),
        (
            {
                "type": "ab_test",
                "variants": [{"name": "a", "model": "m/1"}, {"name": "b", "model": "m/2"}],
                "weights": [0.9, 0.2],
            },
            "weights",
        ),
        ({"type": "bandit", "variants": [], "policy": "x"}, "variants"),
        ({"type": "shadow", "primary": "no uri!", "candidates": ["m/2"]}, "primary"),
        ({"type": "teleport"}, "type"),
    ]
    for data, field in cases:
        with pytest.raises(InvalidInput) as caught:
            parse_strategy(data)
        assert field in caught.value.message, (data, caught.value.message)
    with pytest.raises(InvalidInput, match="canary, shadow, ab_test or bandit"):
        ws.rollouts.create("x", "churn", {"type": "single", "model": "m/1"})
    with pytest.raises(NotFound):
        ws.rollouts.experiment("missing")
    with pytest.raises(InvalidInput):
        ws.rollouts.switch("churn")  # no blue-green strategy to switch
