"""``shipyard experiments``: create, start, stop, watch and analyse experiments on deployments,
compare shadows, and plan sample sizes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from shipyard import rollout
from shipyard.cli.context import require_command, workspace
from shipyard.cli.deployments import print_state, read_document, state_document
from shipyard.cli.monitor import parse_duration
from shipyard.cli.render import JsonFlag, emit_json, fmt, print_fields, print_table, to_jsonable
from shipyard.core.sample_size import DEFAULT_POWER, SamplePlan, plan_mean, plan_proportion
from shipyard.errors import InvalidInput
from shipyard.experiments.analysis import ExperimentAnalysis
from shipyard.experiments.report import write_report
from shipyard.experiments.shadow import compare_shadow
from shipyard.experiments.spec import Canary
from shipyard.experiments.store import DeploymentState, Experiment

app = typer.Typer(
    help="Experiments on deployments: canary, shadow, A/B test, bandit; analysis and planning.",
    invoke_without_command=True,
)
app.callback()(require_command)

Name = Annotated[str, typer.Argument(help="The experiment's name.")]

_CANARY_FLAGS = (
    "--baseline",
    "--candidate",
    "--steps",
    "--weight",
    "--min-exposures",
    "--min-minutes",
    "--guardrail",
    "--metric",
    "--promote-alias",
)


def _steps(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a list of weights; use e.g. 0.05,0.25,0.5,1.0",
            param_hint="'--steps'",
        ) from None


def _guardrail(value: str) -> dict[str, Any]:
    """``METRIC:MAX_WORSENING[:higher|lower]`` (lower is better unless said)."""
    parts = value.split(":")
    direction = parts[2] if len(parts) == 3 else "lower"
    try:
        worsening = float(parts[1]) if len(parts) in (2, 3) else None
    except ValueError:
        worsening = None
    if worsening is None or not parts[0] or direction not in ("higher", "lower"):
        raise typer.BadParameter(
            f"{value!r}: use METRIC:MAX_WORSENING[:higher|lower], e.g. error_rate:0.0 or "
            f"latency_ms:0.10",
            param_hint="'--guardrail'",
        )
    return {
        "metric": parts[0],
        "max_worsening": worsening,
        "higher_is_better": direction == "higher",
    }


def canary_spec(
    *,
    baseline: str | None,
    candidate: str | None,
    steps: str | None,
    weight: float | None,
    min_exposures: int,
    min_minutes: float,
    guardrails: list[str],
    metric: str | None,
    promote_alias: str | None,
) -> dict[str, Any]:
    """The canary strategy the quick flags describe (fields left out when not given, so that
    validation names a missing one)."""
    spec: dict[str, Any] = {"type": "canary", "baseline": baseline, "candidate": candidate}
    if steps is not None:
        spec["schedule"] = [
            {"weight": w, "min_minutes": min_minutes, "min_exposures": min_exposures}
            for w in _steps(steps)
        ]
    spec["weight"] = weight
    spec["guardrails"] = [_guardrail(g) for g in guardrails]
    spec["metric"] = metric
    spec["promote_alias"] = promote_alias
    return {key: value for key, value in spec.items() if value is not None}


def experiment_document(experiment: Experiment) -> dict[str, Any]:
    """An experiment as JSON-able values."""
    return {
        "name": experiment.name,
        "deployment": experiment.deployment,
        "type": experiment.strategy.type,
        "status": experiment.status,
        "step": experiment.step,
        "strategy": experiment.strategy.model_dump(mode="json"),
        "salt": experiment.salt,
        "created_at": experiment.created_at,
        "started_at": experiment.started_at,
        "step_started_at": experiment.step_started_at,
        "ended_at": experiment.ended_at,
    }


def _step(experiment: Experiment) -> str:
    """A canary's step as ``2/4 (25%)``; '-' for the others and before the start."""
    strategy = experiment.strategy
    if not isinstance(strategy, Canary) or not strategy.schedule or experiment.step < 0:
        return "-"
    weight = strategy.schedule[experiment.step].weight
    return f"{experiment.step + 1}/{len(strategy.schedule)} ({weight:.0%})"


def _started(state: DeploymentState, as_json: bool, what: str) -> None:
    if as_json:
        emit_json(state_document(state))
        return
    print_state(state, f"{what}: deployment {state.deployment}, revision {state.revision}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    deployment: Annotated[
        str, typer.Option("--deployment", "-d", help="The deployment it runs on.")
    ],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="The strategy in YAML (canary, shadow, ab_test, bandit)."
        ),
    ] = None,
    canary: Annotated[
        bool, typer.Option("--canary", help="A canary from the flags below instead of a file.")
    ] = False,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Canary: the model URI serving now.")
    ] = None,
    candidate: Annotated[
        str | None, typer.Option("--candidate", help="Canary: the new model URI.")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Canary: the candidate's weights, e.g. 0.05,0.25,0.5,1.0."),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option("--weight", help="Canary without steps: the candidate's fixed weight."),
    ] = None,
    min_exposures: Annotated[
        int, typer.Option("--min-exposures", help="Canary: exposures each step needs first.")
    ] = 0,
    min_minutes: Annotated[
        float, typer.Option("--min-minutes", help="Canary: minutes each step lasts at least.")
    ] = 0.0,
    guardrails: Annotated[
        list[str] | None,
        typer.Option(
            "--guardrail",
            help="Canary: METRIC:MAX_WORSENING[:higher|lower], e.g. error_rate:0.0 (repeatable).",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Canary: the primary outcome metric.")
    ] = None,
    promote_alias: Annotated[
        str | None,
        typer.Option(
            "--promote-alias", help="Canary: the alias moved to the candidate at the end."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Record an experiment (start it with 'start'): from a YAML file, or a canary from flags."""
    given = {
        "--baseline": baseline,
        "--candidate": candidate,
        "--steps": steps,
        "--weight": weight,
        "--min-exposures": min_exposures or None,
        "--min-minutes": min_minutes or None,
        "--guardrail": guardrails or None,
        "--metric": metric,
        "--promote-alias": promote_alias,
    }
    flags = [flag for flag in _CANARY_FLAGS if given[flag] is not None]
    if file is not None and (canary or flags):
        raise InvalidInput(
            f"give the strategy as --file or as --canary flags, not both "
            f"(got --file with {(['--canary'] if canary else []) + flags})",
            field="file",
        )
    if file is None and not canary:
        raise InvalidInput(
            "give the strategy: --file SPEC.yaml, or --canary with --baseline and --candidate",
            field="file",
        )
    spec = (
        read_document(file, "experiment")
        if file is not None
        else canary_spec(
            baseline=baseline,
            candidate=candidate,
            steps=steps,
            weight=weight,
            min_exposures=min_exposures,
            min_minutes=min_minutes,
            guardrails=guardrails or [],
            metric=metric,
            promote_alias=promote_alias,
        )
    )
    experiment = rollout.create_experiment(workspace(ctx), name, deployment, spec)
    if as_json:
        emit_json(experiment_document(experiment))
        return
    typer.echo(
        f"experiment {name} created: {experiment.strategy.type} on deployment {deployment} "
        f"(start it with 'shipyard experiments start {name}')"
    )


@app.command("start")
def start(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Put the experiment's strategy on its deployment (a canary at its first step)."""
    _started(rollout.start_experiment(workspace(ctx), name), as_json, f"experiment {name} started")


@app.command("stop")
def stop(
    ctx: typer.Context,
    name: Name,
    promote: Annotated[
        bool, typer.Option("--promote", help="Serve the candidate alone (moves a promote alias).")
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Serve the control alone, recorded as a rollback.")
    ] = False,
    variant: Annotated[
        str | None,
        typer.Option("--variant", help="With --promote: which candidate, when there are several."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why: kept in the deployment's history.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """End a running experiment: the control serves alone, or the candidate with --promote."""
    state = rollout.stop_experiment(
        workspace(ctx), name, promote=promote, rollback=rollback, variant=variant, reason=reason
    )
    done = "promoted" if promote else "rolled back" if rollback else "stopped"
    _started(state, as_json, f"experiment {name} {done}")


@app.command("step")
def step(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """One look of the rollout controller now (servers do this on their own): a canary steps,
    is promoted or rolled back when its rules say so; a bandit's split is recomputed when due."""
    outcome = rollout.step_experiment(workspace(ctx), name)
    if as_json:
        emit_json(
            None
            if outcome is None
            else {
                "experiment": outcome.experiment,
                "action": outcome.action,
                "deployment": None if outcome.state is None else state_document(outcome.state),
                "details": outcome.details,
            }
        )
        return
    if outcome is None:
        typer.echo(f"experiment {name}: nothing changed (no decision is due yet)")
        return
    typer.echo(f"experiment {name}: {outcome.action}")
    typer.echo(json.dumps(to_jsonable(outcome.details), indent=2))


@app.command("status")
def status(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="One experiment (default: all of them).")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every experiment (newest first), or one with the decisions taken on it."""
    rollouts = workspace(ctx).rollouts
    if name is None:
        experiments = rollouts.experiments(deployment)
        if as_json:
            emit_json([experiment_document(e) for e in experiments])
            return
        print_table(
            "experiments",
            ["name", "deployment", "type", "status", "step", "created", "started", "ended"],
            (
                [
                    e.name,
                    e.deployment,
                    e.strategy.type,
                    e.status,
                    _step(e),
                    e.created_at,
                    e.started_at,
                    e.ended_at,
                ]
                for e in experiments
            ),
            empty="no experiments yet (shipyard experiments create NAME --deployment D ...)",
        )
        return
    experiment = rollouts.experiment(name)
    decisions = rollouts.decisions(name)
    if as_json:
        emit_json({"experiment": experiment_document(experiment), "decisions": decisions})
        return
    print_fields(
        f"experiment {name}",
        {
            "deployment": experiment.deployment,
            "type": experiment.strategy.type,
            "status": experiment.status,
            "step": _step(experiment),
            "created": experiment.created_at,
            "started": experiment.started_at,
            "ended": experiment.ended_at,
        },
    )
    print_table(
        "decisions",
        ["at", "step", "action", "details"],
        (
            [d.at, "-" if d.step < 0 else d.step + 1, d.action, json.dumps(to_jsonable(d.details))]
            for d in decisions
        ),
        empty="no decisions yet",
    )


def print_analysis(analysis: ExperimentAnalysis) -> None:
    """A header (window, units, outcomes, sample-ratio check), then one table per metric: each
    variant's n, mean, lift with its CI, p-value or chance to win, and decision."""
    figures = analysis.summaries
    srm = analysis.srm
    verdict = "not checked" if srm.check is None else f"p = {srm.check.p_value:.4g}"
    if srm.flagged:
        verdict += " — FLAGGED: the split does not match the weights; no decision is taken"
    print_fields(
        f"experiment {analysis.experiment} ({analysis.strategy}, {analysis.status}) on "
        f"{analysis.deployment}",
        {
            "window": f"{fmt(analysis.start)} .. {fmt(analysis.end)}",
            "units": figures.units,
            "exposures": figures.exposures,
            "outcomes": f"{figures.matched_outcomes} matched, {figures.unmatched_outcomes} "
            f"unmatched, {figures.duplicate_outcomes} duplicates ignored",
            "crossed units": figures.crossed_units,
            "sample ratio": f"{verdict} ({srm.note})" if srm.note else verdict,
            "test": "sequential (always valid)" if analysis.sequential else "fixed horizon",
        },
    )
    rows = analysis.rows()
    for metric in dict.fromkeys(row["metric"] for row in rows):
        better = "higher" if analysis.higher_is_better(metric) else "lower"
        print_table(
            f"{metric} ({better} is better; lift relative to {analysis.control})",
            ["variant", "n", "mean", "lift", "CI", "p-value", "chance to win", "decision"],
            (
                [
                    row["variant"],
                    row["n"],
                    _number(row["mean"]),
                    _percent(row["lift"]),
                    _interval(row["ci_low"], row["ci_high"]),
                    _number(row["p_value"]),
                    _share(row["chance_to_win"]),
                    row["decision"],
                ]
                for row in rows
                if row["metric"] == metric
            ),
            empty="no data",
        )


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:+.2%}"


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def _interval(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    return f"[{_percent(low) or '-inf'}, {_percent(high) or '+inf'}]"


@app.command("analyze")
def analyze(
    ctx: typer.Context,
    name: Name,
    json_path: Annotated[
        str | None,
        typer.Option("--json", help="Write the analysis as JSON to this file ('-': stdout)."),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    sequential: Annotated[
        bool,
        typer.Option("--sequential", help="Always-valid p-values and confidence sequences."),
    ] = False,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
) -> None:
    """Each metric per variant: n, mean, lift with its CI, p-value or chance to win, decision."""
    analysis = rollout.analyze_experiment(workspace(ctx), name, sequential=sequential, alpha=alpha)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        write_report(analysis, html)
    if json_path == "-":
        emit_json(analysis.to_dict())
        return
    print_analysis(analysis)
    if json_path is not None:
        _write_json(Path(json_path), analysis.to_dict())
        typer.echo(f"analysis written to {json_path}")
    if html is not None:
        typer.echo(f"report written to {html}")


def _write_json(path: Path, document: Any) -> None:
    """Write atomically: a reader never sees half a document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(to_jsonable(document), indent=2), encoding="utf-8")
    temp.replace(path)


@app.command("compare")
def compare(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="A deployment with a shadow strategy.")],
    window: Annotated[
        str, typer.Option("--window", "-w", help="How far back to look: 30m, 1h, 7d.")
    ] = "1h",
    as_json: JsonFlag = False,
) -> None:
    """Shadow agreement: how often each candidate answered as the primary did, and by how much
    their answers differ."""
    end = datetime.now(UTC)
    start = end - parse_duration(window, "--window")
    comparison = compare_shadow(workspace(ctx).events, deployment, start=start, end=end)
    if as_json:
        emit_json(comparison.to_dict())
        return
    print_table(
        f"shadow comparison of {deployment}, {fmt(start)} .. {fmt(end)}: "
        f"{comparison.primary_rows} primary rows",
        ["candidate", "pairs", "agreement", "|diff| p50", "p90", "p99", "max", "unpaired"],
        (
            [
                c.variant,
                c.pairs,
                _share(_finite(c.agreement_rate)),
                *(
                    _number(_finite(d))
                    for d in (c.difference_p50, c.difference_p90, c.difference_p99)
                ),
                _number(_finite(c.difference_max)),
                f"{c.primary_only} primary, {c.shadow_only} shadow",
            ]
            for c in comparison.candidates
        ),
        empty=f"no shadow predictions of {deployment!r} in the window",
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@app.command("plan")
def plan(
    baseline: Annotated[
        float,
        typer.Option("--baseline", help="The control's rate (0.10), or its mean with --sd."),
    ],
    mde: Annotated[
        float, typer.Option("--mde", help="The smallest relative lift to detect: 0.05 is +5%.")
    ],
    power: Annotated[float, typer.Option("--power", help="Chance to detect it.")] = DEFAULT_POWER,
    alpha: Annotated[float, typer.Option("--alpha", help="Two-sided significance level.")] = 0.05,
    variants: Annotated[int, typer.Option("--variants", min=2, help="Arms, control included.")] = 2,
    sd: Annotated[
        float | None,
        typer.Option("--sd", help="A mean metric: the per-unit standard deviation."),
    ] = None,
    difference: Annotated[
        Literal["relative", "absolute"],
        typer.Option("--difference", help="Plan for the test of the relative or absolute lift."),
    ] = "relative",
    as_json: JsonFlag = False,
) -> None:
    """Units per variant (and in all) for a two-sided test to detect --mde with --power. With
    more than one treatment, alpha is split between the comparisons (Bonferroni)."""
    comparisons = variants - 1
    per_comparison = alpha / comparisons
    result: SamplePlan = (
        plan_proportion(baseline, mde, alpha=per_comparison, power=power, difference=difference)
        if sd is None
        else plan_mean(baseline, sd, mde, alpha=per_comparison, power=power, difference=difference)
    )
    total = result.n_per_variant * variants
    document = {
        "metric": result.kind,
        "difference": difference,
        "baseline": baseline,
        "mde": mde,
        "treatment_mean": result.treatment_mean,
        "power": power,
        "alpha": alpha,
        "alpha_per_comparison": per_comparison,
        "variants": variants,
        "n_exact": result.n_exact,
        "n_per_variant": result.n_per_variant,
        "n_total": total,
    }
    if as_json:
        emit_json(document)
        return
    print_fields(
        f"sample size: {result.kind} {baseline:g} → {result.treatment_mean:.6g} "
        f"({mde:+.2%} {difference}), power {power:g}",
        {
            "per variant": result.n_per_variant,
            "total": f"{total} ({variants} variants)",
            "alpha": alpha if comparisons == 1 else f"{per_comparison:.4g} per comparison",
        },
    )
