"""Drift benchmark: shipyard against Evidently, in one run, on the same generated data.

The data has the shape of the Evidently measurement in issue 5: 50 columns (40 numeric, 10
categorical), a reference and a current table of ``N`` rows each (``--rows``, by default 100,000
and then 1,000,000), drawn from one seed, so every run sees the same rows, and written as Parquet.
Drift is injected into 11 columns (:data:`DRIFTED`, the truth every verdict is scored against):

========  ======================================  =============================================
column    reference                               current
========  ======================================  =============================================
``n00``   normal(10, 2)                           mean + 0.5 sd: normal(11, 2)
``n05``   ½ normal(−2, 1) + ½ normal(2, 1)        mixture weights 0.7 / 0.3
``n10``   uniform(0, 1)                           uniform(0.2, 1.2)
``n12``   Poisson(20), int64                      Poisson(23)
``n17``   lognormal(0, 0.5)                       lognormal(0, 0.7)
``n24``   normal(10, 2)                           sd × 1.5: normal(10, 3)
``n30``   Student t(5)                            + 0.3 sd (0.387)
``n35``   exponential(1)                          10% of the values × 5
``c1``    4 levels, Zipf(1.1) frequencies         the frequencies reversed
``c4``    8 levels, Zipf(1.1)                     a new level takes 15%, the others × 0.85
``c8``    30 levels, Zipf(1.1)                    Zipf(0.5)
========  ======================================  =============================================

Every injected drift is large enough for Evidently's own distances to see it (normed Wasserstein
about 0.3 or more, natural-log Jensen-Shannon distance about 0.23 or more, against thresholds of
0.1), so both libraries' defaults ought to find all 11. The other 39 columns have the same
distribution on both sides: numeric column ``nXX`` is of family ``XX mod 8`` (normal(10, 2),
lognormal(0, 0.5), uniform(0, 1), exponential(1), Poisson(20), the normal mixture, t(5),
beta(2, 5)); categorical ``cK`` has the ``CARDINALITIES[K]`` levels ``v00, v01, …`` with
Zipf(1.1) frequencies. ``n02``, ``n39`` and ``c9`` have 2% nulls on both sides. Categorical
columns are Parquet strings (pandas ``object`` columns, which Evidently infers as categorical).

What runs, each once in a process of its own, so that wall time and peak RSS (the process's
high-water mark, reset just before the timed part; imports are before it) are its own:

- **Evidently** (``.venv-evidently``): ``Report(metrics=[DataDriftPreset()]).run(current,
  reference)`` with every default, then ``snapshot.dict()``. The timing includes what a user must
  do first: ``pandas.read_parquet`` of both files. Its per-column verdicts are Evidently's own rule
  on the scores it reports (distances: ``score >= threshold``; K-S: ``p <= threshold``;
  chi-square: ``p < threshold``), checked against its ``DriftedColumnsCount``;
- **shipyard**: ``shipyard.monitoring.drift.compute_drift`` on the two Parquet paths (its own
  reading, chunked by ``--chunk-rows``), defaults otherwise;
- **Evidently, chi-square** (not timed against shipyard): the categorical columns only, with
  ``DataDriftPreset(columns=..., cat_method="chisquare")`` — Evidently's goodness-of-fit
  "chi-square" (current counts against the reference *frequencies*). In Evidently 0.7 it is the
  default for categorical columns only when the reference has ≤ 1,000 rows (above, the default is
  the Jensen-Shannon distance); issue 5 reports it flagging 4 of 7 undrifted categorical columns
  at 100k rows. Under the null, with samples of equal size, its statistic is about twice a
  chi-square variable, so at p < 0.05 it flags a column with k levels with probability
  ``chi2(k-1).sf(chi2(k-1).ppf(0.95) / 2)``: 0.22 for 3 levels up to 0.96 for 50, 3.6 of the 7
  undrifted columns here on average, at any sample size;
- **exact statistics** (``--skip-exact`` to leave it out): shipyard's p-value tests forced on every
  column (``ks`` numeric, ``chi2`` two-sample contingency categorical), its normed Wasserstein and
  its goodness-of-fit ``chisquare`` against SciPy on the same values (``ks_2samp``,
  ``chi2_contingency``, ``wasserstein_distance``, ``chisquare``) and against Evidently's
  chi-square p-values; the largest absolute difference of each figure, and how many undrifted
  columns each test flags.

Run by hand with the Evidently benchmark environment (see ``benchmarks/README.md``)::

    benchmarks/setup-evidently-env                       # once: creates .venv-evidently
    .venv-evidently/bin/python benchmarks/drift.py        # 100k and 1M rows, several minutes
    .venv-evidently/bin/python benchmarks/drift.py --rows 20000 --skip-evidently   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SEED = 0
NUMERIC = 40
CARDINALITIES = (3, 4, 5, 6, 8, 10, 12, 20, 30, 50)
ZIPF = 1.1
NULL_SHARE = 0.02
NULL_COLUMNS = frozenset({"n02", "n39", "c9"})
NUMERIC_COLUMNS = tuple(f"n{i:02d}" for i in range(NUMERIC))
CATEGORICAL_COLUMNS = tuple(f"c{k}" for k in range(len(CARDINALITIES)))
COLUMNS = NUMERIC_COLUMNS + CATEGORICAL_COLUMNS
DRIFTED: Mapping[str, str] = {
    "n00": "mean + 0.5 sd",
    "n05": "mixture weights 0.5/0.5 → 0.7/0.3",
    "n10": "uniform shifted by 0.2",
    "n12": "Poisson 20 → 23",
    "n17": "lognormal sigma 0.5 → 0.7",
    "n24": "sd × 1.5",
    "n30": "t(5) + 0.3 sd",
    "n35": "10% of values × 5",
    "c1": "frequencies reversed",
    "c4": "new level at 15%",
    "c8": "Zipf 1.1 → 0.5",
}
FAMILIES = (
    "normal(10, 2)",
    "lognormal(0, 0.5)",
    "uniform(0, 1)",
    "exponential(1)",
    "Poisson(20)",
    "½ N(−2,1) + ½ N(2,1)",
    "t(5)",
    "beta(2, 5)",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINES = ("shipyard", "evidently")
LEGEND = (
    "Ratios are Evidently's figure / shipyard's: above 1, shipyard is faster or smaller. Each "
    "engine runs once in a fresh process; wall time from the Parquet paths to the per-column "
    "verdicts (Evidently: `pandas.read_parquet` of both files, then the report); peak RSS is the "
    "process's high-water mark during that part. Verdicts are scored against the 11 columns with "
    "injected drift (8 numeric, 3 categorical) and the 39 without."
)


# ------------------------------------------------------------------------------------------ data
def zipf(levels: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, levels + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def numeric_values(index: int, rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    """Column ``n{index:02d}``: its family's values, drifted on the current side when listed."""
    name = f"n{index:02d}"
    drift = current and name in DRIFTED
    family = index % len(FAMILIES)
    if family == 0:  # normal(10, 2); n00 mean + 0.5 sd, n24 sd x 1.5
        mean = 11.0 if drift and name == "n00" else 10.0
        sd = 3.0 if drift and name == "n24" else 2.0
        return rng.normal(mean, sd, n)
    if family == 1:  # lognormal(0, 0.5); n17 sigma 0.7
        return rng.lognormal(0.0, 0.7 if drift else 0.5, n)
    if family == 2:  # uniform(0, 1); n10 shifted by 0.2
        return rng.uniform(0.0, 1.0, n) + (0.2 if drift else 0.0)
    if family == 3:  # exponential(1); n35 10% of values x 5
        x = rng.exponential(1.0, n)
        if drift:
            x[rng.random(n) < 0.10] *= 5.0
        return x
    if family == 4:  # Poisson(20) as int64; n12 Poisson(23)
        return rng.poisson(23.0 if drift else 20.0, n).astype(np.int64)
    if family == 5:  # normal mixture; n05 weights 0.7 / 0.3
        left = rng.random(n) < (0.7 if drift else 0.5)
        return np.where(left, -2.0, 2.0) + rng.standard_normal(n)
    if family == 6:  # t(5); n30 + 0.3 sd
        return rng.standard_t(5, n) + (0.3 * np.sqrt(5.0 / 3.0) if drift else 0.0)
    return rng.beta(2.0, 5.0, n)


def categorical_values(k: int, rng: np.random.Generator, n: int, current: bool) -> pa.Array:
    """Column ``c{k}``: level indices drawn from its frequencies, as a string array."""
    name = f"c{k}"
    levels = [f"v{i:02d}" for i in range(CARDINALITIES[k])]
    p = zipf(len(levels), ZIPF)
    if current and name in DRIFTED:
        if name == "c1":
            p = p[::-1].copy()
        elif name == "c4":
            levels.append("new")
            p = np.append(p * 0.85, 0.15)
        elif name == "c8":
            p = zipf(len(levels), 0.5)
    codes = rng.choice(len(levels), size=n, p=p).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(levels)).cast(pa.string())


def with_nulls(array: pa.Array, rng: np.random.Generator) -> pa.Array:
    mask = rng.random(len(array)) < NULL_SHARE
    return pc.if_else(pa.array(mask), pa.nulls(len(array), array.type), array)


def generate(rows: int, folder: Path) -> dict[str, Any]:
    """Write ``reference.parquet`` and ``current.parquet`` (``rows`` each) into ``folder``."""
    made: dict[str, Any] = {"rows_per_side": rows, "columns": len(COLUMNS)}
    for side, current in (("reference", False), ("current", True)):
        columns: dict[str, pa.Array] = {}
        for j, name in enumerate(COLUMNS):
            # One stream per (column, side): a column's values do not depend on the others.
            rng = np.random.default_rng([SEED, j, int(current)])
            if name.startswith("n"):
                array: pa.Array = pa.array(numeric_values(int(name[1:]), rng, rows, current))
            else:
                array = categorical_values(int(name[1:]), rng, rows, current)
            if name in NULL_COLUMNS:
                array = with_nulls(array, rng)
            columns[name] = array
        path = folder / f"{side}.parquet"
        pq.write_table(pa.table(columns), path)
        made[f"{side}_bytes"] = path.stat().st_size
    return made


# ------------------------------------------------------------------------------- measurement
def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ≥ 4.0), so a peak is the call's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def proc_status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


def measured(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``run`` with the peak RSS reset first; its answer plus wall time and RSS figures."""
    load_average = os.getloadavg()  # the shared machine's load as the run starts
    rss_before = proc_status_kib("VmRSS")
    peak_reset = reset_peak_rss()
    start = time.perf_counter()
    answer = run()
    wall_s = time.perf_counter() - start
    return {
        "status": "ok",
        "wall_s": wall_s,
        "peak_rss_kib": proc_status_kib("VmHWM"),
        "rss_before_kib": rss_before,
        "peak_reset": peak_reset,
        "load_average_at_start": load_average,
        **answer,
    }


# ------------------------------------------------------------------------- children: engines
EVIDENTLY_RULES: Mapping[str, str] = {
    # Evidently's own comparison per method (evidently/legacy/calculations/stattests/*.py).
    "Wasserstein distance (normed)": ">=",
    "Jensen-Shannon distance": ">=",
    "PSI": ">=",
    "K-S p_value": "<=",
    "chi-square p_value": "<",
    "Z-test p_value": "<",
    # A method named in the preset's options is reported under its registry name.
    "wasserstein": ">=",
    "jensenshannon": ">=",
    "psi": ">=",
    "ks": "<=",
    "chisquare": "<",
    "z": "<",
}


def evidently_drifted(method: str, score: float, threshold: float) -> bool:
    rule = EVIDENTLY_RULES.get(method)
    if rule is None:
        raise ValueError(f"no verdict rule for Evidently's method {method!r}")
    if rule == ">=":
        return score >= threshold
    if rule == "<=":
        return score <= threshold
    return score < threshold


def evidently_columns(snapshot: Any) -> tuple[dict[str, dict[str, Any]], int | None]:
    """Per column: method, score, threshold, verdict; plus Evidently's drifted-columns count."""
    columns: dict[str, dict[str, Any]] = {}
    count = None
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith("DriftedColumnsCount"):
            count = int(value["count"])
        elif config["type"].endswith("ValueDrift"):
            method, threshold = config["method"], float(config["threshold"])
            score = float(value)
            columns[config["column"]] = {
                "method": method,
                "statistic": score,
                "threshold": threshold,
                "drifted": evidently_drifted(method, score, threshold),
            }
    return columns, count


def child_evidently(work: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    chisquare = bool(params.get("chisquare"))

    def run() -> dict[str, Any]:
        began = time.perf_counter()
        if chisquare:  # the categorical columns only, with the goodness-of-fit chi-square
            cols = list(CATEGORICAL_COLUMNS)
            reference = pd.read_parquet(work / "reference.parquet", columns=cols)
            current = pd.read_parquet(work / "current.parquet", columns=cols)
            preset = DataDriftPreset(columns=cols, cat_method="chisquare")
        else:
            reference = pd.read_parquet(work / "reference.parquet")
            current = pd.read_parquet(work / "current.parquet")
            preset = DataDriftPreset()
        load_s = time.perf_counter() - began
        snapshot = Report(metrics=[preset]).run(current, reference)
        columns, count = evidently_columns(snapshot)
        return {"load_s": load_s, "columns": columns, "reported_drifted_count": count}

    return measured(run)


def child_shipyard(work: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        from shipyard.monitoring.drift import compute_drift
    except ImportError as error:
        return {"status": f"not available yet ({error})"}
    options: dict[str, Any] = {}
    if params.get("chunk_rows"):
        options["chunk_rows"] = int(params["chunk_rows"])

    def run() -> dict[str, Any]:
        report = compute_drift(
            str(work / "reference.parquet"), str(work / "current.parquet"), **options
        )
        return {
            "columns": shipyard_columns(report),
            "skipped": [(s.column, s.reason) for s in report.skipped],
        }

    return measured(run)


def shipyard_columns(report: Any) -> dict[str, dict[str, Any]]:
    return {
        c.column: {
            "method": c.method,
            "statistic": c.statistic,
            "p_value": c.p_value,
            "threshold": c.threshold,
            "drifted": c.drifted,
        }
        for c in report.columns
    }


def child_exact(work: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """shipyard's exact statistics against SciPy's on the same values (not timed)."""
    import pandas as pd
    from scipy import stats

    try:
        from shipyard.monitoring.drift import compute_drift
    except ImportError as error:
        return {"status": f"not available yet ({error})"}
    ref_path, cur_path = str(work / "reference.parquet"), str(work / "current.parquet")
    tests = dict.fromkeys(NUMERIC_COLUMNS, "ks") | dict.fromkeys(CATEGORICAL_COLUMNS, "chi2")
    distances = dict.fromkeys(NUMERIC_COLUMNS, "wasserstein")
    ours_tests = shipyard_columns(compute_drift(ref_path, cur_path, methods=tests))
    ours_w = shipyard_columns(
        compute_drift(ref_path, cur_path, columns=list(NUMERIC_COLUMNS), methods=distances)
    )
    goodness_of_fit = dict.fromkeys(CATEGORICAL_COLUMNS, "chisquare")
    ours_gof = shipyard_columns(
        compute_drift(
            ref_path, cur_path, columns=list(CATEGORICAL_COLUMNS), methods=goodness_of_fit
        )
    )
    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    diffs: dict[str, float] = {
        "ks_statistic": 0.0,
        "ks_p_value": 0.0,
        "chi2_statistic": 0.0,
        "chi2_p_value": 0.0,
        "wasserstein_normed": 0.0,
        "chisquare_statistic_finite": 0.0,
        "chisquare_p_value": 0.0,
    }
    scipy_columns: dict[str, dict[str, Any]] = {}
    for name in COLUMNS:
        r, c = reference[name].dropna(), current[name].dropna()
        if name in NUMERIC_COLUMNS:
            x, y = r.to_numpy(np.float64), c.to_numpy(np.float64)
            ks = stats.ks_2samp(x, y)
            w = stats.wasserstein_distance(x, y) / max(float(np.std(x)), 1e-3)
            ours = ours_tests[name]
            diffs["ks_statistic"] = max(
                diffs["ks_statistic"], abs(ours["statistic"] - ks.statistic)
            )
            diffs["ks_p_value"] = max(diffs["ks_p_value"], abs(ours["p_value"] - ks.pvalue))
            diffs["wasserstein_normed"] = max(
                diffs["wasserstein_normed"], abs(ours_w[name]["statistic"] - w)
            )
            scipy_columns[name] = {
                "ks_statistic": float(ks.statistic),
                "ks_p_value": float(ks.pvalue),
                "wasserstein_normed": float(w),
            }
        else:
            levels = sorted(set(r.unique()) | set(c.unique()))
            table = np.array(
                [
                    r.value_counts().reindex(levels, fill_value=0).to_numpy(),
                    c.value_counts().reindex(levels, fill_value=0).to_numpy(),
                ]
            )
            chi2 = stats.chi2_contingency(table)
            ours = ours_tests[name]
            diffs["chi2_statistic"] = max(
                diffs["chi2_statistic"], abs(ours["statistic"] - chi2.statistic)
            )
            diffs["chi2_p_value"] = max(diffs["chi2_p_value"], abs(ours["p_value"] - chi2.pvalue))
            with np.errstate(divide="ignore", invalid="ignore"):  # a level new in current
                gof = stats.chisquare(table[1], table[0] * table[1].sum() / table[0].sum())
            mine = ours_gof[name]
            if np.isfinite(gof.statistic) and np.isfinite(mine["statistic"]):
                diffs["chisquare_statistic_finite"] = max(
                    diffs["chisquare_statistic_finite"], abs(mine["statistic"] - gof.statistic)
                )
            diffs["chisquare_p_value"] = max(
                diffs["chisquare_p_value"], abs(mine["p_value"] - gof.pvalue)
            )
            scipy_columns[name] = {
                "chi2_statistic": float(chi2.statistic),
                "chi2_p_value": float(chi2.pvalue),
                "chisquare_statistic": float(gof.statistic),
                "chisquare_p_value": float(gof.pvalue),
            }
    return {
        "status": "ok",
        "max_abs_diff": diffs,
        "tests": ours_tests,
        "wasserstein": ours_w,
        "chisquare": ours_gof,
        "scipy": scipy_columns,
    }


CHILDREN: dict[str, Callable[[Path, Mapping[str, Any]], dict[str, Any]]] = {
    "evidently": child_evidently,
    "shipyard": child_shipyard,
    "exact": child_exact,
}


def run_child(role: str, work: Path, params: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """Run ``role`` in a fresh interpreter; its answer is the JSON it writes."""
    result_file = work / "out" / f"{tag}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        role,
        "--work",
        str(work),
        "--params",
        json.dumps(params),
        "--result",
        str(result_file),
    ]
    print(f"  running {tag} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    (work / "out" / f"{tag}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not result_file.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
        return {"status": f"failed (exit {done.returncode})", "error": "\n".join(tail[-3:])}
    answer: dict[str, Any] = json.loads(result_file.read_text())
    print(f"  {tag}: {answer.get('status')} in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return answer


def child_main(role: str, work: Path, params: Mapping[str, Any], result: Path) -> None:
    try:
        answer = CHILDREN[role](work, params)
    except Exception as error:  # the parent shows why, the other cells still run
        traceback.print_exc()
        answer = {"status": f"failed: {type(error).__name__}: {error}"}
    result.write_text(json.dumps(answer, default=str))


# ----------------------------------------------------------------------------------- scoring
@dataclass(frozen=True, slots=True)
class Score:
    flagged: int
    true_positive: int
    false_positive: int
    missed: tuple[str, ...]
    false_alarms: tuple[str, ...]
    undrifted_categorical_flagged: int
    undrifted_categorical_tested: int


def score(columns: Mapping[str, Mapping[str, Any]]) -> Score:
    flagged = {name for name, c in columns.items() if c["drifted"]}
    truth = set(DRIFTED)
    undrifted_cat = [n for n in CATEGORICAL_COLUMNS if n in columns and n not in truth]
    return Score(
        flagged=len(flagged),
        true_positive=len(flagged & truth),
        false_positive=len(flagged - truth),
        missed=tuple(n for n in COLUMNS if n in truth and n in columns and n not in flagged),
        false_alarms=tuple(n for n in COLUMNS if n in flagged - truth),
        undrifted_categorical_flagged=sum(n in flagged for n in undrifted_cat),
        undrifted_categorical_tested=len(undrifted_cat),
    )


# ----------------------------------------------------------------------------------- report
def format_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"


def format_gib(kib: int) -> str:
    return f"{kib / 2**20:.2f} GiB" if kib >= 2**19 else f"{kib / 2**10:.0f} MiB"


def ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None or ours <= 0:
        return "—"
    value = theirs / ours
    return f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


LABELS = {
    "shipyard": "shipyard `compute_drift` (defaults)",
    "evidently": "Evidently `DataDriftPreset()` (defaults)",
    "evidently-chisquare": 'Evidently, categorical only, `cat_method="chisquare"`',
}


def summary_rows(rows: int, results: Mapping[str, Any]) -> list[list[str]]:
    ours = results.get("shipyard", {})
    out = []
    for engine in ("shipyard", "evidently", "evidently-chisquare"):
        r = results.get(engine)
        if r is None:
            continue
        if r.get("status") != "ok":
            out.append([f"{rows:,}", LABELS[engine], r["status"], "", "", "", "", "", "", ""])
            continue
        s = score(r["columns"])
        tested = len(r["columns"])
        drifted_tested = sum(n in DRIFTED for n in r["columns"])
        vs = engine == "evidently" and ours.get("status") == "ok"
        out.append(
            [
                f"{rows:,}",
                LABELS[engine],
                format_s(r["wall_s"])
                + (f" ({format_s(r['load_s'])} load)" if "load_s" in r else ""),
                format_gib(r["peak_rss_kib"]),
                ratio(r["wall_s"], ours.get("wall_s")) if vs else "—",
                ratio(r["peak_rss_kib"], ours.get("peak_rss_kib")) if vs else "—",
                f"{s.flagged} of {tested}",
                f"{s.true_positive} of {drifted_tested}"
                + (f" (missed {', '.join(s.missed)})" if s.missed else ""),
                f"{s.false_positive} of {tested - drifted_tested}"
                + (f" ({', '.join(s.false_alarms)})" if s.false_alarms else ""),
                f"{s.undrifted_categorical_flagged} of {s.undrifted_categorical_tested}",
            ]
        )
    return out


def summary_markdown(rows: Sequence[Sequence[str]]) -> str:
    header = [
        "rows per side",
        "library",
        "wall time",
        "peak RSS",
        "ratio time",
        "ratio RSS",
        "columns flagged",
        "drifted found",
        "false alarms",
        "undrifted categorical flagged",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "—"
    p = c.get("p_value")
    if "p_value" not in c and EVIDENTLY_RULES.get(c["method"]) in ("<", "<="):
        p = c["statistic"]  # Evidently's tests report the p-value as the score
    figure = f"p={p:.2g}" if p is not None else f"{c['statistic']:.3g}"
    return f"{'**drift**' if c['drifted'] else 'ok'} ({short_method(c['method'])} {figure})"


def short_method(method: str) -> str:
    return {
        "Wasserstein distance (normed)": "W",
        "Jensen-Shannon distance": "JS",
        "chi-square p_value": "χ² GoF",
        "K-S p_value": "KS",
        "wasserstein": "W",
        "jensenshannon": "JS₂",
        "chi2": "χ²",
        "chisquare": "χ² GoF",
        "ks": "KS",
        "psi": "PSI",
    }.get(method, method)


def verdict_markdown(rows: int, results: Mapping[str, Any], *, all_columns: bool) -> str:
    """Per column, side by side; only the drifted columns and any disagreement unless all."""

    def columns_of(engine: str) -> Mapping[str, Any]:
        r = results.get(engine, {})
        return r.get("columns", {}) if r.get("status") == "ok" else {}

    ship, evid, chisq = (
        columns_of("shipyard"),
        columns_of("evidently"),
        columns_of("evidently-chisquare"),
    )
    header = ["column", "truth", "shipyard", "Evidently (defaults)", "Evidently χ² GoF"]
    lines = [
        f"Verdicts at {rows:,} rows per side ("
        + ("every column" if all_columns else "drifted columns and every wrong verdict")
        + "): W normed Wasserstein, JS Jensen-Shannon distance (natural log in Evidently, JS₂"
        " base 2 in shipyard), χ² GoF goodness of fit, χ² two-sample contingency.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in COLUMNS:
        truth = name in DRIFTED
        verdicts = [c.get(name) for c in (ship, evid, chisq)]
        wrong = any(v is not None and v["drifted"] != truth for v in verdicts)
        if not (all_columns or truth or wrong):
            continue
        family = (
            FAMILIES[int(name[1:]) % len(FAMILIES)]
            if name.startswith("n")
            else f"{CARDINALITIES[int(name[1:])]} levels"
        )
        label = f"**drift**: {DRIFTED[name]}" if truth else f"none ({family})"
        lines.append("| " + " | ".join([name, label, *(cell(v) for v in verdicts)]) + " |")
    return "\n".join(lines)


def agreement_markdown(rows: int, results: Mapping[str, Any]) -> str | None:
    """How close the two libraries' figures are where they compute the same statistic."""
    ship, evid = results.get("shipyard", {}), results.get("evidently", {})
    if ship.get("status") != "ok" or evid.get("status") != "ok":
        return None
    ours, theirs = ship["columns"], evid["columns"]
    w_diff, js_diff, same = 0.0, 0.0, 0
    for name in COLUMNS:
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None:
            continue
        same += a["drifted"] == b["drifted"]
        if a["method"] == "wasserstein" and b["method"] == "Wasserstein distance (normed)":
            w_diff = max(w_diff, abs(a["statistic"] - b["statistic"]))
        elif a["method"] == "jensenshannon" and b["method"] == "Jensen-Shannon distance":
            # shipyard's distance is in base 2, Evidently's in base e: d2 = de / sqrt(ln 2)
            js_diff = max(js_diff, abs(a["statistic"] - b["statistic"] / np.sqrt(np.log(2.0))))
    return (
        f"Same statistic on both sides at {rows:,} rows: normed Wasserstein, largest difference "
        f"{w_diff:.1e}; Jensen-Shannon distance (Evidently's converted to base 2), {js_diff:.1e}. "
        f"Same verdict on {same} of {len(COLUMNS)} columns."
    )


def exact_markdown(rows: int, r: Mapping[str, Any], evidently_gof: Mapping[str, Any]) -> str:
    if r.get("status") != "ok":
        return f"Exact statistics at {rows:,} rows: {r.get('status')}"
    d = r["max_abs_diff"]
    tests = r["tests"]
    ks_fa = sum(tests[n]["drifted"] for n in NUMERIC_COLUMNS if n not in DRIFTED)
    chi_fa = sum(tests[n]["drifted"] for n in CATEGORICAL_COLUMNS if n not in DRIFTED)
    ks_tp = sum(tests[n]["drifted"] for n in NUMERIC_COLUMNS if n in DRIFTED)
    chi_tp = sum(tests[n]["drifted"] for n in CATEGORICAL_COLUMNS if n in DRIFTED)
    n_num_drift = sum(n in DRIFTED for n in NUMERIC_COLUMNS)
    n_cat_drift = sum(n in DRIFTED for n in CATEGORICAL_COLUMNS)
    return (
        f"Exact statistics at {rows:,} rows per side, shipyard vs SciPy on the same values, "
        f"largest absolute difference over the columns: KS D {d['ks_statistic']:.1e}, KS p "
        f"{d['ks_p_value']:.1e}; two-sample χ² {d['chi2_statistic']:.1e}, its p "
        f"{d['chi2_p_value']:.1e}; normed Wasserstein {d['wasserstein_normed']:.1e}. "
        f"With the tests forced (p < 0.05): KS flags {ks_tp} of {n_num_drift} drifted and "
        f"{ks_fa} of {NUMERIC - n_num_drift} undrifted numeric columns; the two-sample χ² "
        f"{chi_tp} of {n_cat_drift} drifted and {chi_fa} of "
        f"{len(CATEGORICAL_COLUMNS) - n_cat_drift} undrifted categorical columns."
        + gof_sentence(r, evidently_gof)
    )


def gof_sentence(r: Mapping[str, Any], evidently_gof: Mapping[str, Any]) -> str:
    """shipyard's ``chisquare`` (goodness of fit) against SciPy's and Evidently's."""
    d, ours = r["max_abs_diff"], r["chisquare"]
    undrifted = [n for n in CATEGORICAL_COLUMNS if n not in DRIFTED]
    flagged = sum(ours[n]["drifted"] for n in undrifted)
    text = (
        f" shipyard's goodness-of-fit `chisquare` vs `scipy.stats.chisquare`: statistic "
        f"{d['chisquare_statistic_finite']:.1e} (finite ones), p {d['chisquare_p_value']:.1e}; "
        f"it flags {flagged} of {len(undrifted)} undrifted categorical columns"
    )
    if evidently_gof.get("status") == "ok":
        theirs = evidently_gof["columns"]
        p_diff = max(abs(ours[n]["p_value"] - theirs[n]["statistic"]) for n in theirs)
        same = sum(ours[n]["drifted"] == theirs[n]["drifted"] for n in theirs)
        text += (
            f"; against Evidently's chi-square p-values: largest difference {p_diff:.1e}, "
            f"same verdict on {same} of {len(theirs)} columns"
        )
    return text + "."


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("shipyard", "evidently", "pandas", "pyarrow", "numpy", "scipy", "duckdb"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="rows per side"
    )
    parser.add_argument("--skip-evidently", action="store_true", help="shipyard only (quick)")
    parser.add_argument("--skip-chisquare", action="store_true", help="no Evidently chi-square run")
    parser.add_argument("--skip-exact", action="store_true", help="no shipyard-vs-SciPy check")
    parser.add_argument(
        "--chunk-rows", type=int, help="shipyard's chunk size (its default if unset)"
    )
    parser.add_argument("--all-verdicts", action="store_true", help="list every column's verdicts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--params", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.work, args.params, args.result)
        return

    command = " ".join(
        [".venv-evidently/bin/python", "benchmarks/drift.py", *map(shlex.quote, sys.argv[1:])]
    )
    folder = Path(tempfile.mkdtemp(prefix="shipyard-bench-drift-"))
    raw: dict[str, Any] = {}
    summary: list[list[str]] = []
    sections: list[str] = []
    for rows in args.rows:
        work = folder / str(rows)
        (work / "out").mkdir(parents=True)
        began = time.perf_counter()
        print(f"generating {rows:,} rows per side in {work} ...", file=sys.stderr, flush=True)
        made = generate(rows, work)
        print(f"  done in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        results: dict[str, Any] = {"data": made}
        shipyard_params = {"chunk_rows": args.chunk_rows}
        results["shipyard"] = run_child("shipyard", work, shipyard_params, "shipyard")
        if not args.skip_evidently:
            results["evidently"] = run_child("evidently", work, {}, "evidently")
            if not args.skip_chisquare:
                results["evidently-chisquare"] = run_child(
                    "evidently", work, {"chisquare": True}, "evidently-chisquare"
                )
        if not args.skip_exact:
            results["exact"] = run_child("exact", work, {}, "exact")
        ev = results.get("evidently", {})
        if ev.get("status") == "ok" and ev.get("reported_drifted_count") is not None:
            ours = sum(c["drifted"] for c in ev["columns"].values())
            ev["verdicts_match_reported_count"] = ours == ev["reported_drifted_count"]
        raw[str(rows)] = results
        summary += summary_rows(rows, results)
        sections.append(verdict_markdown(rows, results, all_columns=args.all_verdicts))
        agreement = agreement_markdown(rows, results)
        if agreement:
            sections.append(agreement)
        if "exact" in results:
            gof = results.get("evidently-chisquare", {})
            sections.append(exact_markdown(rows, results["exact"], gof))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)

    meta = {**environment(), "command": command, "drifted": dict(DRIFTED)}
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS_DIR / f"drift-{stamp}.json"
    output.write_text(json.dumps({**meta, "results": raw}, indent=2, default=str) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    print(json.dumps(meta, indent=2))
    print()
    print(f"Command: `{command}`")
    print()
    print(LEGEND)
    print()
    print(summary_markdown(summary))
    for section in sections:
        print()
        print(section)
    print(f"\nwritten to {output}" + (f"; data kept in {folder}" if args.keep else ""))


if __name__ == "__main__":
    main()
