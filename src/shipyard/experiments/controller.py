"""The rollout controller: walks a canary through its schedule and recomputes bandit splits.

Every server replica calls :func:`tick` for the experiments it serves on its refresh interval
(and ``shipyard experiments step`` calls it by hand). Writes are compare-and-set on the
deployment's revision, so when several replicas decide at once exactly one change lands and the
others see a :class:`~shipyard.errors.Conflict` and do nothing.

**Canary.** At each tick, with ``now`` from the caller's clock (tests inject one):

- the guardrails and the primary metric are checked on everything since the experiment started
  (:mod:`shipyard.core.rollout_rules`: always-valid confidence sequences, so checking at every
  tick does not inflate false rollbacks);
- the sample-ratio check and the step's minimum (``min_minutes`` *and* ``min_exposures``,
  counting both variants' exposures) use only the exposures assigned under the current
  deployment revision, whose split is fixed (not those a replica assigned under the previous
  split in the moment before it applied the new one);
- ``rollback`` serves the baseline alone; ``promote`` moves to the next step's weight, or, after
  the last step, serves the candidate alone and moves ``promote_alias`` to its version;
  ``hold_for_srm`` changes nothing. Each of these is recorded (``rollout_decisions``) with every
  number used; ``continue`` is not recorded (nothing happened).

**Bandit.** Once ``interval_s`` has passed since the split last changed, the policy recomputes
it from the reward metric's per-arm summaries (seeded by the deployment's revision, so every
replica computes the same split) and the new split is written and recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shipyard.core.bandits import (
    UCB1,
    ArmSummary,
    EpsilonGreedy,
    ThompsonBernoulli,
    ThompsonGaussian,
)
from shipyard.core.experiment_stats import MetricSummary, srm_check
from shipyard.core.identifiers import parse_model_uri
from shipyard.core.rollout_rules import Guardrail, GuardrailCheck, check_guardrail, decide_step
from shipyard.errors import Conflict
from shipyard.experiments.analysis import summaries
from shipyard.experiments.spec import Bandit, Canary
from shipyard.experiments.store import DeploymentState, Experiment, Rollouts
from shipyard.storage.events import EventLog

logger = logging.getLogger(__name__)

ResolveVersion = Callable[[str], int]  # a model URI → its version number now
MoveAlias = Callable[[str, str, int, str], None]  # (model name, alias, version, reason)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a tick did: the action, the new deployment state (None: unchanged) and details."""

    experiment: str
    action: str
    state: DeploymentState | None
    details: dict[str, Any]


def tick(
    rollouts: Rollouts,
    events: EventLog,
    experiment: Experiment,
    state: DeploymentState,
    *,
    now: datetime,
    resolve_version: ResolveVersion,
    move_alias: MoveAlias | None = None,
    actor: str | None = "shipyard-controller",
) -> Outcome | None:
    """One look at a running experiment; None when there is nothing to do (or another replica
    changed the deployment first)."""
    if experiment.status != "running" or state.experiment != experiment.name:
        return None
    try:
        if isinstance(experiment.strategy, Canary):
            return _canary(
                rollouts,
                events,
                experiment,
                experiment.strategy,
                state,
                now=now,
                resolve_version=resolve_version,
                move_alias=move_alias,
                actor=actor,
            )
        if isinstance(experiment.strategy, Bandit):
            return _bandit(rollouts, events, experiment, experiment.strategy, state, now, actor)
    except Conflict:
        logger.info("experiment %s: another replica changed it first", experiment.name)
    return None


def _canary(
    rollouts: Rollouts,
    events: EventLog,
    experiment: Experiment,
    canary: Canary,
    state: DeploymentState,
    *,
    now: datetime,
    resolve_version: ResolveVersion,
    move_alias: MoveAlias | None,
    actor: str | None,
) -> Outcome | None:
    if not canary.schedule or experiment.step < 0:
        return None
    step = canary.schedule[experiment.step]
    started = experiment.started_at or experiment.created_at
    step_started = experiment.step_started_at or started
    metrics = [g.metric for g in canary.guardrails]
    if canary.metric is not None:
        metrics.append(canary.metric)
    overall = summaries(events, experiment, start=started, end=now, metrics=metrics)
    in_step = summaries(
        events, experiment, start=step_started, end=now, metrics=metrics, revision=state.revision
    )
    checks = [
        _check(g.metric, g.higher_is_better, g.max_worsening, overall.metrics, canary.alpha)
        for g in canary.guardrails
    ]
    primary = (
        None
        if canary.metric is None
        else _check(canary.metric, canary.higher_is_better, 0.0, overall.metrics, canary.alpha)
    )
    weights = state.weights or (1.0 - step.weight, step.weight)
    counts = [in_step.units.get("baseline", 0), in_step.units.get("candidate", 0)]
    srm = srm_check(counts, weights)
    exposures = sum(in_step.exposures.values())
    minutes = (now - step_started).total_seconds() / 60.0
    minimum_met = exposures >= step.min_exposures and minutes >= step.min_minutes
    decision = decide_step(checks, srm=srm, minimum_met=minimum_met, primary=primary)
    if decision.action == "continue":
        return None
    details = {
        **decision.to_dict(),
        "step": experiment.step,
        "weights": list(weights),
        "step_exposures": exposures,
        "step_minutes": minutes,
        "exposures": overall.exposures,
        "unmatched_outcomes": overall.unmatched_outcomes,
    }
    reason = "; ".join(decision.reasons)
    new_state: DeploymentState | None = None
    action: str = decision.action
    if action == "hold_for_srm":
        last = rollouts.decisions(experiment.name)
        if last and last[-1].action == action and last[-1].step == experiment.step:
            return None  # already recorded: a human must look
    elif action == "rollback":
        new_state = rollouts.finish(
            experiment.name,
            "rolled_back",
            canary.baseline,
            expected_revision=state.revision,
            now=now,
            actor=actor,
            reason=reason,
        )
    elif experiment.step + 1 < len(canary.schedule):
        action = "step"
        following = canary.schedule[experiment.step + 1].weight
        details["next_weights"] = [1.0 - following, following]
        new_state = rollouts.advance(
            experiment.name,
            experiment.step + 1,
            (1.0 - following, following),
            expected_revision=state.revision,
            now=now,
            actor=actor,
            reason=reason,
        )
    else:
        version = resolve_version(canary.candidate)
        model = parse_model_uri(canary.candidate).name
        serve = f"models:/{model}/{version}"
        new_state = rollouts.finish(
            experiment.name,
            "promoted",
            serve,
            expected_revision=state.revision,
            now=now,
            actor=actor,
            reason=reason,
        )
        details["promoted_version"] = version
        if canary.promote_alias is not None and move_alias is not None:
            move_alias(model, canary.promote_alias, version, f"experiment {experiment.name}")
            details["alias_moved"] = {"alias": canary.promote_alias, "version": version}
    rollouts.record(experiment.name, experiment.step, action, details)
    logger.info("experiment %s: %s (%s)", experiment.name, action, reason)
    return Outcome(experiment.name, action, new_state, details)


def _check(
    metric: str,
    higher_is_better: bool,
    max_worsening: float,
    metrics: dict[str, dict[str, MetricSummary[float]]],
    alpha: float,
) -> GuardrailCheck:
    rule = Guardrail(metric, "higher" if higher_is_better else "lower", max_worsening)
    arms = metrics.get(metric, {})
    empty = MetricSummary(0.0, 0.0, 0.0)
    return check_guardrail(
        rule, arms.get("baseline", empty), arms.get("candidate", empty), alpha=alpha
    )


def _bandit(
    rollouts: Rollouts,
    events: EventLog,
    experiment: Experiment,
    bandit: Bandit,
    state: DeploymentState,
    now: datetime,
    actor: str | None,
) -> Outcome | None:
    if (now - state.updated_at).total_seconds() < bandit.interval_s:
        return None
    started = experiment.started_at or experiment.created_at
    figures = summaries(events, experiment, start=started, end=now, metrics=[bandit.metric])
    names = [v.name for v in bandit.variants]
    empty = MetricSummary(0.0, 0.0, 0.0)
    by_arm = figures.metrics.get(bandit.metric, {})
    arms = [
        ArmSummary(int(s.n), float(s.sum), float(s.sum_squares))
        for s in (by_arm.get(name, empty) for name in names)
    ]
    seed = state.revision
    policy: ThompsonBernoulli | ThompsonGaussian | UCB1 | EpsilonGreedy
    match bandit.policy:
        case "thompson" if bandit.reward == "binary":
            policy = ThompsonBernoulli(floor=bandit.floor, seed=seed)
        case "thompson":
            policy = ThompsonGaussian(floor=bandit.floor, seed=seed)
        case "ucb1":
            policy = UCB1(floor=bandit.floor)
        case _:
            policy = EpsilonGreedy(epsilon=bandit.epsilon, floor=bandit.floor)
    weights = [float(w) for w in policy.allocate(arms)]
    new_state = rollouts.set_weights(
        state.deployment,
        weights,
        expected_revision=state.revision,
        actor=actor,
        reason=f"{bandit.policy} allocation from {sum(a.n for a in arms)} units",
    )
    details = {
        "weights": dict(zip(names, weights, strict=True)),
        "arms": {
            n: {"n": a.n, "sum": a.sum, "sum_sq": a.sum_sq}
            for n, a in zip(names, arms, strict=True)
        },
        "policy": bandit.policy,
    }
    rollouts.record(experiment.name, -1, "allocate", details)
    return Outcome(experiment.name, "allocate", new_state, details)
