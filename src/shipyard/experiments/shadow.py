"""Shadow agreement: each shadow model's predictions against the primary's on the same requests.

The server logs a mirrored request's answers under the primary's request id, with variants
``primary`` and ``shadow-N`` (:mod:`shipyard.server.shadows`); :func:`compare_shadow` pairs them
by ``(request_id, row)`` in the prediction log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.core.jsonable import jsonable
from shipyard.experiments.analysis import BoolArray, FloatArray, strings
from shipyard.storage.events import PREDICTIONS, EventLog

SHADOW_RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class ShadowCandidate:
    """One shadow's predictions against the primary's on the same (request, row) pairs."""

    variant: str
    pairs: int
    agreement_rate: float
    difference_p50: float
    difference_p90: float
    difference_p99: float
    difference_max: float
    primary_only: int
    shadow_only: int


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """:func:`compare_shadow`'s result."""

    deployment: str
    start: datetime
    end: datetime
    primary_rows: int
    outputs: tuple[str, ...]
    rtol: float
    candidates: tuple[ShadowCandidate, ...]

    def rows(self) -> list[dict[str, Any]]:
        """One row per candidate (NaN as None)."""
        return [jsonable(candidate) for candidate in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN as None, times as ISO 8601)."""
        return jsonable(self)  # type: ignore[no-any-return]


def compare_shadow(
    events: EventLog,
    deployment: str,
    *,
    start: datetime,
    end: datetime,
    rtol: float = SHADOW_RTOL,
) -> ShadowComparison:
    """Compare each shadow's predictions (variant ``shadow-N``) with the primary's (``primary``)
    on the same ``(request_id, row)`` in ``[start, end)``.

    A pair *agrees* when every output agrees: a 2-D output (columns ``out_<name>_0 … _k``,
    ``k >= 1``: class probabilities) by its argmax; a numeric 1-D output when
    ``|p − s| <= rtol · max(1, |p|, |s|)`` (relative to the values' magnitude, absolute below 1);
    any other output by equality (both null agree). A pair's *difference* is the largest absolute
    difference of its numeric output values (for a 2-D output, over its columns); its quantiles
    p50/p90/p99 and maximum are over the pairs (NaN: none). ``primary_only``: primary rows the
    shadow has no prediction for (a shadow fraction below 1 mirrors only some requests);
    ``shadow_only``: the reverse.
    """
    table = events.read(PREDICTIONS, deployment, start, end)
    variant = strings(table, "variant")
    primary, primary_keys = _unique_rows(table, variant == "primary")
    groups = _output_groups([c for c in table.column_names if c.startswith("out_")])
    shadows = {str(v) for v in variant if v is not None and re.fullmatch(r"shadow-\d+", v)}
    candidates = []
    for name in sorted(shadows, key=lambda v: int(v.removeprefix("shadow-"))):
        shadow, shadow_keys = _unique_rows(table, variant == name)
        found = primary_keys.get_indexer(shadow_keys)
        pairs = found >= 0
        left = primary.take(pa.array(found[pairs]))
        right = shadow.filter(pa.array(pairs))
        agree, difference = _agreement(left, right, groups, rtol)
        finite = difference[np.isfinite(difference)]
        quantiles = (
            [*np.quantile(finite, [0.5, 0.9, 0.99]).tolist(), float(finite.max())]
            if finite.size
            else [math.nan] * 4
        )
        count = int(pairs.sum())
        candidates.append(
            ShadowCandidate(
                variant=name,
                pairs=count,
                agreement_rate=float(agree.mean()) if count else math.nan,
                difference_p50=quantiles[0],
                difference_p90=quantiles[1],
                difference_p99=quantiles[2],
                difference_max=quantiles[3],
                primary_only=int(primary.num_rows) - count,
                shadow_only=int(shadow.num_rows) - count,
            )
        )
    return ShadowComparison(
        deployment=deployment,
        start=start,
        end=end,
        primary_rows=int(primary.num_rows),
        outputs=tuple(name for name, _ in groups),
        rtol=rtol,
        candidates=tuple(candidates),
    )


# ---------------------------------------------------------------- shadows
def _output_groups(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Outputs as ``(name, columns)``: ``out_x_0 … out_x_k`` (``k >= 1``) is one 2-D output
    ``out_x``; every other ``out_`` column is a 1-D output."""
    indexed: dict[str, dict[int, str]] = {}
    for column in columns:
        match = re.fullmatch(r"(out_.+)_(\d+)", column)
        if match:
            indexed.setdefault(match[1], {})[int(match[2])] = column
    groups: list[tuple[str, list[str]]] = []
    grouped: set[str] = set()
    for base, members in indexed.items():
        if len(members) >= 2 and sorted(members) == list(range(len(members))):
            groups.append((base, [members[j] for j in range(len(members))]))
            grouped.update(members.values())
    groups += [(c, [c]) for c in columns if c not in grouped]
    return sorted(groups)


def _unique_rows(table: pa.Table, rows: BoolArray) -> tuple[pa.Table, pd.MultiIndex]:
    """The selected rows, the first of each (request, row), and their keys."""
    chosen = table.filter(pa.array(rows))
    keys = pd.MultiIndex.from_arrays(
        [strings(chosen, "request_id"), chosen.column("row").to_numpy()]
    )
    first = ~keys.duplicated()
    return chosen.filter(pa.array(first)), keys[first]


def _agreement(
    primary: pa.Table, shadow: pa.Table, groups: Sequence[tuple[str, list[str]]], rtol: float
) -> tuple[BoolArray, FloatArray]:
    """Per pair: whether all outputs agree, and the largest absolute numeric difference."""
    agree = np.ones(primary.num_rows, dtype=bool)
    difference = np.full(primary.num_rows, math.nan)
    for _, columns in groups:
        numeric = all(_is_number(primary.column(c).type) for c in columns)
        if not numeric:
            for c in columns:
                p, s = strings(primary, c), strings(shadow, c)
                agree &= np.array([a == b for a, b in zip(p, s, strict=True)], dtype=bool)
            continue
        p = np.column_stack([_floats(primary, c) for c in columns])
        s = np.column_stack([_floats(shadow, c) for c in columns])
        gap = np.abs(p - s)
        worst = np.where(np.isnan(gap), -np.inf, gap).max(axis=1, initial=-np.inf)
        difference = np.fmax(difference, np.where(np.isneginf(worst), math.nan, worst))
        both_null = np.isnan(p).all(axis=1) & np.isnan(s).all(axis=1)
        if len(columns) > 1:
            valid = ~(np.isnan(p).any(axis=1) | np.isnan(s).any(axis=1))
            same = np.zeros(p.shape[0], dtype=bool)
            same[valid] = p[valid].argmax(axis=1) == s[valid].argmax(axis=1)
        else:
            scale = np.maximum(1.0, np.maximum(np.abs(p[:, 0]), np.abs(s[:, 0])))
            with np.errstate(invalid="ignore"):
                same = gap[:, 0] <= rtol * scale
        agree &= same | both_null
    return agree, difference


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_floating(kind) or pa.types.is_integer(kind))


def _floats(table: pa.Table, column: str) -> FloatArray:
    return np.asarray(table.column(column).cast(pa.float64()).to_numpy(), dtype=np.float64)
