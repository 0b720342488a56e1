"""Multivariate drift by a domain classifier: can a model tell the current rows from the reference?

Per-column tests see one marginal at a time, so they miss a change in how columns move together (a
correlation that flips, a segment whose mix of values changes while every column's histogram
stays put). A classifier trained to separate reference rows (label 0) from current rows (label 1)
sees the joint distribution: when the two samples come from the same distribution no classifier
does better than chance, and its held-out ROC AUC is 0.5 up to sampling noise.

:func:`domain_classifier_drift`:

1. samples at most ``max_rows`` rows per side without replacement (seeded);
2. encodes the columns by their profile kind (:func:`shipyard.core.profile.arrow_kind`): numeric
   as float64 (nulls as NaN, ±inf as one past the finite range), booleans as 0/1, categoricals as
   ordinal codes learned on the union of both samples — the 254 most frequent values (ties by
   value) get codes, the rest share one "other" code — passed to the classifier as categorical
   features; timestamp and other columns are skipped and listed (time separates two windows by
   construction);
3. scores every row out of fold with scikit-learn's ``HistGradientBoostingClassifier``
   (``max_iter`` trees, sklearn's default early stopping above 10,000 rows) under seeded
   stratified ``n_splits``-fold cross-validation, and reports the folds' ROC AUC, mean and std;
4. decides: drift when the mean AUC exceeds ``effective_threshold``, the larger of the practical
   ``threshold`` (0.55 by default: a classifier that ranks a current row above a reference row 55%
   of the time, a small but real effect) and the null quantile ``0.5 + z(1 - alpha) ·
   null_auc_std``.

The null spread needs no permutations. Without drift the held-out labels of a fold are independent
of its held-out scores (the rows are exchangeable and the model never saw them), so each fold's AUC
is the Mann–Whitney statistic ``U / (n0 · n1)`` under its null: mean 1/2, variance
``v = (n0 + n1 + 1) / (12 · n0 · n1)`` for the fold's ``n0`` reference and ``n1`` current rows
(ties between scores only shrink it). The folds are not independent, though: fold i's model learns
from fold j's chance patterns and vice versa, so both AUCs share the term "how well i's chance
pattern matches j's". For a learner that is linear in its training labels (a kernel smoother,
and boosting near the null to first order) the mean AUC is ``(2/k) · Σ_{i<j} B_ij`` over pair
terms of equal variance, which makes its variance exactly twice the independent-folds figure::

    null_auc_std = sqrt(2 · Σ_folds v) / k

Measured for this classifier over seeded null replications (5 folds): at 500 rows per side (100
replications) the mean AUC's standard deviation was 0.0240 against 0.0259 from the formula and
0.0183 if the folds were independent; at 200 rows per side with ``max_iter=30`` (200
replications) 0.0419 against 0.0411, with 22 of 200 alarms at ``alpha = 0.1`` (threshold 0.5) —
the formula holds to the simulations' ±5% precision. ``p_value`` is the one-sided normal
tail of the observed mean. At 10,000 rows per side ``null_auc_std`` is 0.0058, so the 0.55
threshold sits 8.7 null standard deviations out and only an effect that large raises the verdict;
at 100 rows per side it is 0.058 and the null quantile (0.636 at ``alpha = 0.01``) takes over, so
small samples do not raise false alarms at 0.55.

Sample size and cost (``max_rows``, 50,000 by default). The AUC is that of a classifier learned
from the samples, so it approaches the best achievable separation from below as the samples grow.
Measured on 40 numeric and 10 categorical columns, 5 numeric columns shifted by 0.1 standard
deviation (the best achievable AUC is Φ(0.1·√5/√2) = 0.563): AUC 0.536 with 20,000 rows per side
(no verdict), 0.553 with 50,000, 0.557 with 100,000. Time for that table, on one thread of a busy
2-core machine: 4.4 s / 13 s / 19 s without drift (early stopping ends the boosting quickly) and
9 s / 32 s / 59 s with it (a quarter of it for the importances); peak memory about 0.8 GiB with
three 100,000-row frames loaded.

The classifier's OpenMP threads default to every core; ``n_threads`` caps them for the call
(process-wide while it runs, via threadpoolctl) when monitoring shares a machine with serving.

``top_features`` (computed only when drift is detected — without drift they would rank noise, and
they cost about a third of the run): permutation importance
(``sklearn.inspection.permutation_importance``, scoring ROC AUC) of each fold's model on its
held-out rows (at most ``importance_rows`` of them, stratified), averaged over folds and
``importance_repeats`` shuffles: the drop in held-out AUC when a column's values are
shuffled, i.e. how much of the separation the column carries (its own shift or its interactions).
The classifier has no impurity importances (``HistGradientBoostingClassifier`` offers none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from shipyard.core.profile import Kind, arrow_kind, as_table, decoded
from shipyard.errors import InvalidInput

DEFAULT_AUC_THRESHOLD = 0.55
DEFAULT_ALPHA = 0.01
DEFAULT_MAX_ROWS = 50_000
IMPORTANCE_METHOD = "permutation: drop in held-out ROC AUC when the column is shuffled"
# HistGradientBoosting takes categorical codes below max_bins (255): 254 values and "other".
_MAX_CODES = 254
_ENCODED_KINDS: frozenset[Kind] = frozenset({"numeric", "boolean", "categorical"})


@dataclass(frozen=True)
class FeatureImportance:
    column: str
    importance: float  # mean drop in held-out ROC AUC when the column is shuffled
    std: float  # over folds and repeats

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "importance": self.importance, "std": self.std}


@dataclass(frozen=True)
class MultivariateDrift:
    """The domain classifier's verdict (see the module docstring for every figure)."""

    auc: float  # mean of the folds' held-out ROC AUC
    auc_std: float  # standard deviation of the folds' AUC (ddof=0)
    fold_aucs: tuple[float, ...]
    threshold: float  # the practical threshold asked for
    alpha: float
    null_auc_std: float  # spread of ``auc`` when nothing drifted
    effective_threshold: float  # max(threshold, 0.5 + z(1 - alpha) * null_auc_std)
    p_value: float  # one-sided, normal approximation of the null
    drift_detected: bool
    n_reference: int  # rows used, after sampling
    n_current: int
    columns: tuple[str, ...]  # the columns the classifier saw
    categorical_columns: tuple[str, ...]
    skipped_columns: tuple[str, ...]  # timestamp or other columns, and those on one side only
    top_features: tuple[FeatureImportance, ...]
    importance_method: str
    n_splits: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc,
            "auc_std": self.auc_std,
            "fold_aucs": list(self.fold_aucs),
            "threshold": self.threshold,
            "alpha": self.alpha,
            "null_auc_std": self.null_auc_std,
            "effective_threshold": self.effective_threshold,
            "p_value": self.p_value,
            "drift_detected": self.drift_detected,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "columns": list(self.columns),
            "categorical_columns": list(self.categorical_columns),
            "skipped_columns": list(self.skipped_columns),
            "top_features": [feature.to_dict() for feature in self.top_features],
            "importance_method": self.importance_method,
            "n_splits": self.n_splits,
            "seed": self.seed,
        }


def auc_null_std(n_reference: Sequence[int], n_current: Sequence[int]) -> float:
    """Standard deviation of the mean of per-fold ROC AUCs when nothing drifted: each fold's AUC
    is a Mann–Whitney ``U / (n0 · n1)`` with null variance ``(n0 + n1 + 1) / (12 · n0 · n1)``, and
    the dependence between folds doubles the variance of their mean (module docstring)."""
    variances = [
        (n0 + n1 + 1) / (12.0 * n0 * n1) for n0, n1 in zip(n_reference, n_current, strict=True)
    ]
    return math.sqrt(2.0 * sum(variances)) / len(variances)


def domain_classifier_drift(
    reference: pa.Table | pd.DataFrame,
    current: pa.Table | pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    threshold: float = DEFAULT_AUC_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    max_rows: int = DEFAULT_MAX_ROWS,
    n_splits: int = 5,
    max_iter: int = 100,
    top_k: int = 10,
    importance_repeats: int = 2,
    importance_rows: int = 5_000,
    n_threads: int | None = None,
    seed: int = 0,
) -> MultivariateDrift:
    """Train a classifier to tell ``current`` rows from ``reference`` rows and report its
    cross-validated ROC AUC and verdict. ``columns`` defaults to the reference's columns that the
    current data also has. Deterministic for a given ``seed`` (and scikit-learn version)."""
    _check_arguments(
        threshold, alpha, max_rows, n_splits, max_iter, top_k, importance_repeats, importance_rows
    )
    if n_threads is not None and n_threads < 1:
        raise InvalidInput(f"n_threads must be >= 1 or None, got {n_threads}", field="n_threads")
    reference_table, current_table = as_table(reference), as_table(current)
    chosen, skipped = _choose_columns(reference_table, current_table, columns)
    rng = np.random.default_rng(seed)
    reference_table = _sample(reference_table, max_rows, rng)
    current_table = _sample(current_table, max_rows, rng)
    n_reference, n_current = reference_table.num_rows, current_table.num_rows
    for side, rows in (("reference", n_reference), ("current", n_current)):
        if rows < 2 * n_splits:
            raise InvalidInput(
                f"the {side} data has {rows} rows; the domain classifier needs at least "
                f"{2 * n_splits} (2 per fold, n_splits={n_splits})",
                field=side,
            )

    matrix, used, categorical = _feature_matrix(reference_table, current_table, chosen, skipped)
    labels = np.concatenate([np.zeros(n_reference, dtype=np.int8), np.ones(n_current, np.int8)])
    is_categorical = np.array([name in categorical for name in used])
    with threadpool_limits(limits=n_threads):
        folds = _cross_validate(
            matrix, labels, is_categorical, n_splits=n_splits, max_iter=max_iter, seed=seed
        )
    fold_aucs = [fold.auc for fold in folds]
    fold_current = [int(labels[fold.test].sum()) for fold in folds]
    fold_reference = [
        len(fold.test) - current for fold, current in zip(folds, fold_current, strict=True)
    ]
    auc = float(np.mean(fold_aucs))
    null_std = auc_null_std(fold_reference, fold_current)
    null_quantile = 0.5 + NormalDist().inv_cdf(1.0 - alpha) * null_std
    effective = max(threshold, null_quantile)
    drift_detected = auc > effective
    top_features: tuple[FeatureImportance, ...] = ()
    if drift_detected and top_k:
        with threadpool_limits(limits=n_threads):
            importances = _permutation_importances(
                folds, matrix, labels, repeats=importance_repeats, rows=importance_rows, seed=seed
            )
        top_features = _top_features(used, importances, top_k)
    return MultivariateDrift(
        auc=auc,
        auc_std=float(np.std(fold_aucs)),
        fold_aucs=tuple(fold_aucs),
        threshold=threshold,
        alpha=alpha,
        null_auc_std=null_std,
        effective_threshold=effective,
        p_value=NormalDist().cdf((0.5 - auc) / null_std),
        drift_detected=drift_detected,
        n_reference=n_reference,
        n_current=n_current,
        columns=tuple(used),
        categorical_columns=tuple(categorical),
        skipped_columns=tuple(skipped),
        top_features=top_features,
        importance_method=IMPORTANCE_METHOD,
        n_splits=n_splits,
        seed=seed,
    )


@dataclass(frozen=True)
class _Fold:
    model: HistGradientBoostingClassifier
    test: npt.NDArray[np.intp]  # the held-out rows
    auc: float


def _cross_validate(
    matrix: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    is_categorical: npt.NDArray[np.bool_],
    *,
    n_splits: int,
    max_iter: int,
    seed: int,
) -> list[_Fold]:
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds: list[_Fold] = []
    for train, test in splitter.split(matrix, labels):
        model = HistGradientBoostingClassifier(
            max_iter=max_iter,
            categorical_features=is_categorical if is_categorical.any() else None,
            random_state=seed,
        )
        model.fit(matrix[train], labels[train])
        scores = model.predict_proba(matrix[test])[:, 1]
        folds.append(_Fold(model, test, float(roc_auc_score(labels[test], scores))))
    return folds


def _permutation_importances(
    folds: Sequence[_Fold],
    matrix: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    *,
    repeats: int,
    rows: int,
    seed: int,
) -> list[npt.NDArray[np.float64]]:
    """Per fold, the drop in held-out AUC per column and repeat (columns × repeats)."""
    importances: list[npt.NDArray[np.float64]] = []
    for fold in folds:
        held_out = _subsample(fold.test, labels, rows, seed)
        result = permutation_importance(
            fold.model,
            matrix[held_out],
            labels[held_out],
            scoring="roc_auc",
            n_repeats=repeats,
            random_state=seed,
        )
        importances.append(np.asarray(result.importances, dtype=np.float64))
    return importances


def _check_arguments(
    threshold: float,
    alpha: float,
    max_rows: int,
    n_splits: int,
    max_iter: int,
    top_k: int,
    importance_repeats: int,
    importance_rows: int,
) -> None:
    if not 0.5 <= threshold < 1.0:
        raise InvalidInput(
            f"threshold must be an AUC in [0.5, 1), got {threshold}", field="threshold"
        )
    if not 0.0 < alpha < 0.5:
        raise InvalidInput(f"alpha must be in (0, 0.5), got {alpha}", field="alpha")
    if n_splits < 2:
        raise InvalidInput(f"n_splits must be >= 2, got {n_splits}", field="n_splits")
    if max_rows < 2 * n_splits:
        raise InvalidInput(
            f"max_rows must be >= 2 * n_splits ({2 * n_splits}), got {max_rows}", field="max_rows"
        )
    if max_iter < 1:
        raise InvalidInput(f"max_iter must be >= 1, got {max_iter}", field="max_iter")
    if top_k < 0:
        raise InvalidInput(f"top_k must be >= 0, got {top_k}", field="top_k")
    if importance_rows < 10:
        raise InvalidInput(
            f"importance_rows must be >= 10, got {importance_rows}", field="importance_rows"
        )
    if importance_repeats < 1:
        raise InvalidInput(
            f"importance_repeats must be >= 1, got {importance_repeats}", field="importance_repeats"
        )


def _choose_columns(
    reference: pa.Table, current: pa.Table, columns: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    if columns is None:
        present = set(current.column_names)
        chosen = [name for name in reference.column_names if name in present]
        shared = set(chosen)
        skipped = [name for name in reference.column_names if name not in shared]
        skipped += [name for name in current.column_names if name not in shared]
        return chosen, skipped
    for name in columns:
        for side, table in (("reference", reference), ("current", current)):
            if name not in table.column_names:
                raise InvalidInput(
                    f"column {name!r} is not in the {side} data; it has: "
                    + ", ".join(table.column_names),
                    field="columns",
                )
    return list(dict.fromkeys(columns)), []


def _sample(table: pa.Table, max_rows: int, rng: np.random.Generator) -> pa.Table:
    if table.num_rows <= max_rows:
        return table
    return table.take(np.sort(rng.choice(table.num_rows, size=max_rows, replace=False)))


def _subsample(
    rows: npt.NDArray[np.intp], labels: npt.NDArray[np.int8], limit: int, seed: int
) -> npt.NDArray[np.intp]:
    """At most ``limit`` of ``rows``, stratified by label (seeded)."""
    if len(rows) <= limit:
        return rows
    rng = np.random.default_rng(seed)
    share = limit / len(rows)
    picked = [
        rng.choice(part, size=max(1, round(share * len(part))), replace=False)
        for part in (rows[labels[rows] == 0], rows[labels[rows] == 1])
    ]
    return np.sort(np.concatenate(picked))


def _feature_matrix(
    reference: pa.Table, current: pa.Table, columns: Sequence[str], skipped: list[str]
) -> tuple[npt.NDArray[np.float64], list[str], list[str]]:
    """Reference rows then current rows as one float64 matrix; the columns used and which of them
    are categorical. Columns of other kinds are appended to ``skipped``."""
    features: list[npt.NDArray[np.float64]] = []
    used: list[str] = []
    categorical: list[str] = []
    for name in columns:
        left, right = reference.column(name), current.column(name)
        kinds = {arrow_kind(left.type), arrow_kind(right.type)} - {None}
        if len(kinds) > 1:
            raise InvalidInput(
                f"column {name!r} is {left.type} in the reference but {right.type} in the "
                "current data; both sides need the same kind (numeric, boolean or categorical)",
                field=name,
            )
        kind = kinds.pop() if kinds else None
        if kind not in _ENCODED_KINDS:
            skipped.append(name)
            continue
        features.append(_encode(kind, left, right))
        used.append(name)
        if kind == "categorical":
            categorical.append(name)
    if not used:
        raise InvalidInput(
            "no numeric, boolean or categorical column to compare; skipped: "
            + (", ".join(skipped) or "none"),
            field="columns",
        )
    return np.column_stack(features), used, categorical


def _encode(
    kind: Kind, reference: pa.ChunkedArray, current: pa.ChunkedArray
) -> npt.NDArray[np.float64]:
    """One column of both sides (reference rows first) as float64 for the classifier."""
    if kind == "categorical":
        return _category_codes(
            pa.chunked_array(
                decoded(reference).cast(pa.large_string()).chunks
                + decoded(current).cast(pa.large_string()).chunks,
                type=pa.large_string(),
            )
        )
    values = np.concatenate([_floats(reference), _floats(current)])
    infinite = np.isinf(values)
    if infinite.any():
        finite = values[np.isfinite(values)]
        high, low = (finite.max() + 1.0, finite.min() - 1.0) if len(finite) else (1.0, -1.0)
        values[infinite] = np.where(values[infinite] > 0, high, low)
    return values


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """Numbers and booleans as float64, nulls as NaN."""
    floats = decoded(column).cast(pa.float64())
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def _category_codes(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """Codes by frequency on the union (ties by value), the rest as one "other" code, nulls NaN."""
    counts = pc.value_counts(column.drop_null())
    values = counts.field("values").to_pylist()
    frequencies = counts.field("counts").to_pylist()
    ranked = sorted(zip(values, frequencies, strict=True), key=lambda item: (-item[1], item[0]))
    kept = pa.array([value for value, _ in ranked[:_MAX_CODES]], type=column.type)
    codes = pc.index_in(column, value_set=kept)
    result = np.asarray(codes.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    result = result.copy()
    other = np.isnan(result) & np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
    result[other] = float(_MAX_CODES)
    return result


def _top_features(
    columns: Sequence[str], importances: Sequence[npt.NDArray[np.float64]], top_k: int
) -> tuple[FeatureImportance, ...]:
    if not importances or not top_k:
        return ()
    stacked = np.concatenate(importances, axis=1)  # (columns, folds * repeats)
    means, stds = stacked.mean(axis=1), stacked.std(axis=1)
    order = sorted(range(len(columns)), key=lambda i: (-means[i], columns[i]))[:top_k]
    return tuple(FeatureImportance(columns[i], float(means[i]), float(stds[i])) for i in order)
