"""Bandit benchmark: cumulative regret of shipyard's bandit policies against a uniform split.

A simulated endpoint with Bernoulli arms (conversion rates 0.10 / 0.11 / 0.12 by default,
``--arms``) serves ``--requests`` requests (100,000). As the server does, the allocation is
recomputed every ``--batch`` requests (1,000) from the per-arm summaries seen so far, and the
requests of a batch are routed by it (a multinomial draw). Regret is the pseudo-regret
``Σ pulls_i × (p_best − p_i)``, the expected conversions lost against always serving the best
arm. Each policy runs with ``--seeds`` seeds (20); seed ``s`` draws the same routing and rewards
stream for every policy (common random numbers) and seeds the Thompson policies. What runs:

- **uniform**: a fixed 1/k split (an A/B/n test), the baseline;
- **epsilon-greedy**: ``EpsilonGreedy(epsilon=0.1)``;
- **UCB1**: ``UCB1()`` (rewards in [0, 1]);
- **Thompson (Beta-Bernoulli)**: ``ThompsonBernoulli()``, 10,000 Monte Carlo draws;
- **Thompson (Gaussian)**: ``ThompsonGaussian()`` on the same 0/1 rewards;

all with the exploration floor ``--floor`` (0). The table gives the regret's mean ± standard
deviation over the seeds, its ratio to the uniform split's mean, the share of requests the best
arm received, and the mean time of one allocation recomputation. A second table gives the cost
of one sticky assignment (``Allocation.assign``, ``BanditAllocation.assign``) and of one
per-request draw, by ``timeit`` (best of 7 runs of 200,000 calls).

Run with shipyard's own environment (NumPy only)::

    .venv/bin/python benchmarks/bandits.py            # full run, about 30 s
    .venv/bin/python benchmarks/bandits.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shipyard.core.assignment import Allocation, BanditAllocation
from shipyard.core.bandits import (
    UCB1,
    ArmSummary,
    BanditPolicy,
    EpsilonGreedy,
    ThompsonBernoulli,
    ThompsonGaussian,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Uniform:
    """The baseline: a fixed even split, whatever the outcomes."""

    def __init__(self, *, floor: float = 0.0) -> None:
        self.floor = floor

    def allocate(self, arms: Sequence[ArmSummary]) -> NDArray[np.float64]:
        return np.full(len(arms), 1.0 / len(arms))


POLICIES: dict[str, Callable[[float, int], BanditPolicy]] = {
    "uniform": lambda floor, seed: Uniform(floor=floor),
    "epsilon-greedy (ε = 0.1)": lambda floor, seed: EpsilonGreedy(epsilon=0.1, floor=floor),
    "UCB1": lambda floor, seed: UCB1(floor=floor),
    "Thompson (Beta-Bernoulli)": lambda floor, seed: ThompsonBernoulli(floor=floor, seed=seed),
    "Thompson (Gaussian)": lambda floor, seed: ThompsonGaussian(floor=floor, seed=seed),
}


@dataclass(frozen=True)
class Run:
    regret: float
    best_share: float
    allocate_s: float  # mean time of one allocation recomputation


@dataclass(frozen=True)
class Result:
    policy: str
    regret_mean: float
    regret_sd: float
    ratio_to_uniform: float
    best_share: float
    allocate_ms: float


def simulate(
    policy: BanditPolicy, rates: NDArray[np.float64], requests: int, batch: int, seed: int
) -> Run:
    rng = np.random.default_rng(seed)
    k = len(rates)
    pulls, successes = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    weights = np.full(k, 1.0 / k)
    regret, allocate_s, recomputations = 0.0, 0.0, 0
    served = 0
    while served < requests:
        size = min(batch, requests - served)
        batch_pulls = rng.multinomial(size, weights)
        pulls += batch_pulls
        successes += rng.binomial(batch_pulls, rates)
        regret += float(batch_pulls @ (rates.max() - rates))
        served += size
        summaries = [
            ArmSummary(int(n), float(s), float(s)) for n, s in zip(pulls, successes, strict=True)
        ]
        start = time.perf_counter()
        weights = policy.allocate(summaries)
        allocate_s += time.perf_counter() - start
        recomputations += 1
    return Run(regret, float(pulls[np.argmax(rates)] / pulls.sum()), allocate_s / recomputations)


def measure_regret(
    rates: NDArray[np.float64], requests: int, batch: int, seeds: int, floor: float
) -> list[Result]:
    runs = {
        name: [simulate(make(floor, seed), rates, requests, batch, seed) for seed in range(seeds)]
        for name, make in POLICIES.items()
    }
    uniform = float(np.mean([run.regret for run in runs["uniform"]]))
    results = []
    for name, policy_runs in runs.items():
        regrets = np.array([run.regret for run in policy_runs])
        results.append(
            Result(
                policy=name,
                regret_mean=float(regrets.mean()),
                regret_sd=float(regrets.std(ddof=1)) if seeds > 1 else 0.0,
                ratio_to_uniform=float(regrets.mean()) / uniform,
                best_share=float(np.mean([run.best_share for run in policy_runs])),
                allocate_ms=1e3 * float(np.mean([run.allocate_s for run in policy_runs])),
            )
        )
    return results


def measure_assignment(number: int) -> dict[str, float]:
    """Nanoseconds per call, best of 7 runs of ``number`` calls."""
    fixed = Allocation(["control", "a", "b"], [0.5, 0.25, 0.25])
    bandit = BanditAllocation(["a", "b", "c"], [0.2, 0.3, 0.5])
    draws = random.Random(0)
    calls: dict[str, Callable[[], object]] = {
        "Allocation.assign(salt, unit)": lambda: fixed.assign("checkout-button", "user-1234567"),
        "BanditAllocation.assign(salt, unit)": lambda: bandit.assign(
            "checkout-button", "user-1234567"
        ),
        "Allocation.draw(rng.random())": lambda: fixed.draw(draws.random()),
    }
    return {
        name: 1e9 * min(timeit.repeat(call, number=number, repeat=7)) / number
        for name, call in calls.items()
    }


def environment() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {name: version(name) for name in ["shipyard", "numpy"]},
    }


def regret_table(results: Sequence[Result]) -> str:
    lines = [
        "| policy | regret (mean ± sd) | ratio to uniform | best arm's share | allocate |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.policy} | {r.regret_mean:.1f} ± {r.regret_sd:.1f} | {r.ratio_to_uniform:.2f} "
            f"| {100 * r.best_share:.1f}% | {r.allocate_ms:.2f} ms |"
        )
    return "\n".join(lines)


def assignment_table(costs: dict[str, float]) -> str:
    lines = ["| call | time per call |", "| --- | ---: |"]
    lines += [f"| `{name}` | {ns / 1e3:.2f} µs |" for name, ns in costs.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=float, nargs="+", default=[0.10, 0.11, 0.12])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000, help="requests per recomputation")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--floor", type=float, default=0.0, help="exploration floor per arm")
    parser.add_argument("--quick", action="store_true", help="10,000 requests, 3 seeds")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seeds = 10_000, 3
    rates = np.array(args.arms, dtype=np.float64)
    settings = {key: getattr(args, key) for key in ["arms", "requests", "batch", "seeds", "floor"]}
    results = measure_regret(rates, args.requests, args.batch, args.seeds, args.floor)
    costs = measure_assignment(20_000 if args.quick else 200_000)
    meta = {**environment(), "quick": args.quick, "settings": settings}
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS_DIR / f"bandits-{stamp}{'-quick' if args.quick else ''}.json"
    payload = {**meta, "results": [asdict(r) for r in results], "assignment_ns": costs}
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    print(
        f"\nBernoulli arms {' / '.join(f'{p:.2f}' for p in rates)}, {args.requests:,} requests, "
        f"allocation recomputed every {args.batch:,}, floor {args.floor}, {args.seeds} seeds\n"
    )
    print(regret_table(results))
    print()
    print(assignment_table(costs))
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
