"""Data profiles: statistics checked against NumPy, the JSON format, and validation rules."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from shipyard.core.profile import QUANTILE_LEVELS, Profile, bin_counts, profile_table
from shipyard.core.validation import Expectations, Validator, validate
from shipyard.errors import InvalidInput


def _floats_with_specials(seed: int, n: int = 5_000) -> pa.Array:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(size=n)
    values[rng.choice(n, 40, replace=False)] = np.nan
    values[:3] = [np.inf, -np.inf, np.inf]
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, 100, replace=False)] = True
    return pa.array(values, mask=mask)


def _reference_table(seed: int = 0, n: int = 2_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    nullable = rng.normal(size=n)
    return pa.table(
        {
            "x": x,
            "age": rng.integers(18, 90, n),
            "nullable": pa.array(nullable, mask=rng.random(n) < 0.1),
            "city": rng.choice(["paris", "oslo", "rome", "lima"], n),
            "plan": pa.array(rng.choice(["free", "pro"], n)).dictionary_encode(),
            "active": rng.random(n) < 0.3,
            "seen": pa.array(
                np.datetime64("2024-01-01T00:00:00", "s") + rng.integers(0, 10**7, n),
                type=pa.timestamp("s", tz="UTC"),
            ),
        }
    )


# ---------------------------------------------------------------- statistics
def test_numeric_statistics_match_numpy() -> None:
    column = _floats_with_specials(seed=1)
    profile = profile_table(pa.table({"v": column}), bins=12)
    col = profile.columns[0]
    present = column.drop_null().to_numpy()
    finite = present[np.isfinite(present)]
    non_nan = present[~np.isnan(present)]

    assert (col.kind, col.dtype, col.count, col.null_count) == ("numeric", "double", 5_000, 100)
    assert col.nan_count == int(np.isnan(present).sum()) > 0
    assert col.inf_count == 3
    assert (col.min, col.max) == (finite.min(), finite.max())
    assert col.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert col.std == pytest.approx(finite.std(), rel=1e-12)
    assert col.quantiles == tuple(np.quantile(finite, QUANTILE_LEVELS))
    expected_edges = np.unique(
        np.quantile(finite, [j / 12 for j in range(1, 12)], method="inverted_cdf")
    )
    assert col.bin_edges == tuple(expected_edges)
    full_edges = np.concatenate(([-np.inf], expected_edges, [np.inf]))
    assert col.bin_counts == tuple(np.histogram(non_nan, bins=full_edges)[0])
    assert sum(col.bin_counts) == col.count - col.null_count - col.nan_count


def test_integer_column_keeps_integer_extremes_and_bins_discrete_values() -> None:
    values = np.repeat(np.arange(5), [10, 20, 30, 25, 15])
    col = profile_table(pa.table({"k": pa.array(values, type=pa.int32())})).columns[0]
    assert (col.min, col.max) == (0, 4)
    assert isinstance(col.min, int)
    assert col.quantiles == tuple(np.quantile(values, QUANTILE_LEVELS))
    # the edges are the distinct deciles: each value owns a bin
    assert col.bin_edges == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert col.bin_counts == (0, 10, 20, 30, 25, 15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bin_counts_equal_numpy_histogram_with_infinite_outer_edges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(-5, 5, 1_000).astype(np.float64)  # many values sit exactly on edges
    values[:4] = [np.nan, np.inf, -np.inf, np.nan]
    edges = np.array([-3.0, 0.0, 0.5, 4.0])
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    np.testing.assert_array_equal(
        bin_counts(values, edges), np.histogram(values[~np.isnan(values)], bins=full)[0]
    )
    assert bin_counts(values, []).tolist() == [998]


def test_column_without_finite_values_has_one_bin_and_no_moments() -> None:
    col = profile_table(pa.table({"v": pa.array([np.inf, None, np.nan, -np.inf])})).columns[0]
    assert (col.min, col.mean, col.std, col.quantiles, col.bin_edges) == (None, None, None, (), ())
    assert (col.null_count, col.nan_count, col.inf_count, col.bin_counts) == (1, 1, 2, (2,))


def test_categorical_top_categories_other_and_distinct() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2 + ["e"] + [None] * 4
    table = pa.table({"s": values, "dict": pa.array(values).dictionary_encode()})
    top3 = profile_table(table, max_categories=3)
    for col in top3.columns:
        assert col.kind == "categorical"
        assert col.categories == (("a", 5), ("b", 3), ("c", 3))  # ties by value
        assert (col.distinct_count, col.other_count, col.null_count) == (5, 3, 4)
        assert not col.categories_complete
    assert top3.columns[1].dtype == "dictionary<values=string, indices=int32, ordered=0>"
    full = profile_table(table).columns[0]
    assert full.categories_complete
    assert dict(full.categories) == {"a": 5, "b": 3, "c": 3, "d": 2, "e": 1}
    assert full.other_count == 0


def test_boolean_and_timestamp_columns() -> None:
    table = pa.table(
        {
            "flag": pa.array([True, False, True, None, True]),
            "aware": pa.array([3, 1, None, 2, 5], type=pa.timestamp("ms", tz="Europe/Paris")),
            "naive": pa.array([10**9, None, 0, 5, 6], type=pa.timestamp("ns")),
            "day": pa.array([19_000, 18_000, None, None, 19_500], type=pa.date32()),
            "empty": pa.array([None] * 5, type=pa.timestamp("s")),
        }
    )
    flag, aware, naive, day, empty = profile_table(table).columns
    assert (flag.kind, flag.true_count, flag.false_count, flag.null_count) == ("boolean", 3, 1, 1)
    assert (aware.kind, aware.earliest, aware.latest) == (
        "timestamp",
        "1970-01-01T00:00:00.001Z",
        "1970-01-01T00:00:00.005Z",
    )
    assert (naive.earliest, naive.latest) == (
        "1970-01-01T00:00:00.000000000",
        "1970-01-01T00:00:01.000000000",
    )
    assert (day.earliest, day.latest) == ("2019-04-14", "2023-05-23")
    assert (empty.earliest, empty.latest, empty.null_count) == (None, None, 5)


def test_pandas_input_is_profiled_as_its_arrow_table_with_nan_as_null() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "s": ["a", None, "b"]}, index=[7, 8, 9])
    profile = profile_table(frame)
    assert profile == profile_table(pa.Table.from_pandas(frame, preserve_index=False))
    assert profile.column_names == ["x", "s"]
    x = profile.columns[0]
    assert (x.null_count, x.nan_count) == (1, 0)


def test_unsupported_input_and_parameters_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"pyarrow\.Table or a pandas DataFrame") as info:
        profile_table([1, 2, 3])
    assert info.value.field == "data"
    with pytest.raises(InvalidInput, match="bins must be >= 1"):
        profile_table(pa.table({"x": [1.0]}), bins=0)


# ---------------------------------------------------------------- JSON format
def test_json_round_trip_is_exact_and_key_order_is_stable() -> None:
    table = _reference_table().append_column("specials", _floats_with_specials(2, 2_000))
    table = table.append_column("nothing", pa.nulls(2_000))
    profile = profile_table(table)
    text = json.dumps(profile.to_dict(), allow_nan=False)  # no NaN/inf anywhere
    assert Profile.from_dict(json.loads(text)) == profile
    assert Profile.from_dict(orjson.loads(orjson.dumps(profile.to_dict()))) == profile
    assert json.dumps(Profile.from_dict(json.loads(text)).to_dict()) == text
    as_dict = profile.to_dict()
    assert list(as_dict) == [
        "format_version",
        "num_rows",
        "quantile_levels",
        "bins",
        "max_categories",
        "columns",
    ]
    assert list(as_dict["columns"][0]) == [
        "name",
        "kind",
        "dtype",
        "count",
        "null_count",
        "nan_count",
        "inf_count",
        "min",
        "max",
        "mean",
        "std",
        "quantiles",
        "bin_edges",
        "bin_counts",
    ]
    assert as_dict["format_version"] == 1


def test_from_dict_refuses_other_versions_and_missing_fields() -> None:
    data = profile_table(pa.table({"x": [1.0, 2.0]})).to_dict()
    with pytest.raises(InvalidInput, match="format_version 2 is not supported") as info:
        Profile.from_dict({**data, "format_version": 2})
    assert info.value.field == "format_version"
    del data["columns"][0]["quantiles"]
    with pytest.raises(InvalidInput, match="column 'x' is missing the field 'quantiles'"):
        Profile.from_dict(data)


# ---------------------------------------------------------------- validation
def _columns(table: pa.Table) -> dict[str, np.ndarray[Any, Any]]:
    """What the server hands the Validator: one array per column, nulls as NaN/None/NaT."""
    return {name: table.column(name).to_numpy() for name in table.column_names}


def test_reference_validates_against_its_own_profile() -> None:
    table = _reference_table().append_column("specials", _floats_with_specials(3, 2_000))
    profile = profile_table(table)
    report = validate(table, profile)
    assert report.ok, report.violations
    assert report.to_dict() == {"ok": True, "rows": 2_000, "violations": []}
    validator = Validator(profile)
    assert validator.check(_columns(table)) == []
    for i in range(0, 2_000, 7):  # one-row requests, nulls and infinities among them
        assert validator.check(_columns(table.slice(i, 1))) == []


def _one(report_violations: list[Any], code: str, column: str) -> Any:
    matching = [v for v in report_violations if v.code == code and v.column == column]
    assert len(matching) == 1, report_violations
    violation = matching[0]
    assert f"column {column!r} fails {code}" in violation.message
    return violation


def test_missing_column_and_wrong_type() -> None:
    profile = profile_table(pa.table({"x": [1.0, 2.0], "s": ["a", "b"], "k": [1, 2]}))
    data = pa.table({"x": ["1.0", "2.0"], "s": ["a", "b"]})
    report = validate(data, profile)
    assert [(v.column, v.code) for v in report.violations] == [
        ("x", "type"),
        ("k", "missing_column"),
    ]
    wrong = _one(report.violations, "type", "x")
    assert (wrong.expected, wrong.observed, wrong.count) == ("numeric (double)", "string", 2)
    assert _one(report.violations, "missing_column", "k").count == 2
    # integers for a float column, floats for an integer column, all-null columns: the right type
    fitting = pa.table({"x": [1, 2], "s": pa.nulls(2), "k": [1.0, 2.0]})
    assert [v.code for v in validate(fitting, profile).violations] == ["unexpected_null"]
    validator = Validator(profile)
    checked = validator.check({"x": np.array(["1.0"]), "s": np.array([True]), "k": np.array([2])})
    assert [(v.column, v.code, v.observed) for v in checked] == [
        ("x", "type", "<U3"),
        ("s", "type", "bool"),
    ]
    objects = validator.check(
        {
            "x": np.array([1, None], dtype=object),
            "s": np.array([1, "a"], dtype=object),
            "k": np.array([True], dtype=object),
        }
    )
    assert [(v.column, v.code, v.observed) for v in objects] == [
        ("x", "unexpected_null", 1),
        ("s", "type", "object (int)"),
        ("k", "type", "object (bool)"),
    ]


def test_object_arrays_of_numbers_and_dataframes_are_checked_like_arrow_tables() -> None:
    profile = profile_table(pa.table({"x": [1.0, 2.0, 3.0]}))
    numbers = np.array([Decimal("1.5"), np.float32(2), 3, None, np.float32("nan")], dtype=object)
    assert [(v.code, v.count) for v in Validator(profile).check({"x": numbers})] == [
        ("unexpected_null", 2)
    ]
    many = np.array([*numbers] * 10, dtype=object)  # past the small-batch path: same counts
    assert [(v.code, v.count) for v in Validator(profile).check({"x": many})] == [
        ("unexpected_null", 20)
    ]
    frame = pd.DataFrame({"x": [1.0, np.nan, 9.0]})  # pandas NaN is a null, as in the profile
    assert [v.code for v in validate(frame, profile).violations] == [
        "unexpected_null",
        "out_of_range",
    ]


def test_nulls_where_the_reference_had_none() -> None:
    profile = profile_table(pa.table({"x": np.arange(200.0)}))
    data = pa.table({"x": pa.array(np.arange(200.0), mask=np.arange(200) < 3)})
    violation = _one(validate(data, profile).violations, "unexpected_null", "x")
    assert (violation.expected, violation.observed, violation.count, violation.rows) == (
        0,
        3,
        3,
        200,
    )
    lenient = Expectations(forbid_unseen_nulls=False)
    assert validate(data, profile, expectations=lenient).ok  # 1.5% <= 0 + 5%
    assert Validator(profile).check({"x": np.array([np.nan])})[0].code == "unexpected_null"
    assert Validator(profile, lenient).check({"x": np.array([np.nan])}) == []  # 1 row: no rates


def test_null_rate_above_reference_plus_tolerance() -> None:
    rng = np.random.default_rng(4)
    profile = profile_table(
        pa.table({"x": pa.array(rng.normal(size=1_000), mask=rng.random(1_000) < 0.1)})
    )
    reference_rate = profile.columns[0].null_rate

    def with_nulls(count: int, rows: int = 1_000) -> pa.Table:
        return pa.table({"x": pa.array(np.zeros(rows), mask=np.arange(rows) < count)})

    assert validate(with_nulls(140), profile).ok  # 14% is within reference + 5%
    violation = _one(validate(with_nulls(300), profile).violations, "null_rate", "x")
    assert violation.expected == pytest.approx(reference_rate + 0.05)
    assert (violation.observed, violation.count) == (0.3, 300)
    assert "0.3" in violation.message
    # below min_rows_for_rates a rate is not judged
    assert validate(with_nulls(50, rows=99), profile).ok
    assert not validate(
        with_nulls(50, rows=99), profile, expectations=Expectations(min_rows_for_rates=10)
    ).ok
    strict = Expectations(null_rate_tolerance=0.0)
    assert not validate(with_nulls(140), profile, expectations=strict).ok


def test_nan_and_inf_where_the_reference_had_none() -> None:
    profile = profile_table(pa.table({"x": [1.0, 2.0, 3.0]}))
    data = pa.table({"x": [1.0, np.nan, np.inf, -np.inf, 2.0]})  # Arrow keeps NaN apart from null
    report = validate(data, profile)
    assert [v.code for v in report.violations] == ["unexpected_nan", "unexpected_inf"]
    assert _one(report.violations, "unexpected_nan", "x").count == 1
    assert _one(report.violations, "unexpected_inf", "x").count == 2
    seen = profile_table(pa.table({"x": [1.0, np.nan, np.inf, 3.0]}))
    assert validate(data, seen).ok
    assert validate(
        data, profile, expectations=Expectations(forbid_unseen_nan=False, forbid_unseen_inf=False)
    ).ok
    assert [v.code for v in Validator(profile).check({"x": np.array([np.inf])})] == [
        "unexpected_inf"
    ]


def test_values_outside_the_widened_reference_range() -> None:
    profile = profile_table(pa.table({"x": np.linspace(0.0, 10.0, 101)}))
    inside = pa.table({"x": [-1.0, 0.0, 10.0, 11.0]})  # 10% of the range is 1.0 on each side
    assert validate(inside, profile).ok
    data = pa.table({"x": [-1.5, 5.0, 12.0, 11.0, None]})
    report = validate(data, profile, expectations=Expectations(forbid_unseen_nulls=False))
    violation = _one(report.violations, "out_of_range", "x")
    assert (violation.expected, violation.observed, violation.count, violation.rows) == (
        (-1.0, 11.0),
        (-1.5, 12.0),
        2,
        5,
    )
    assert "2 of 5 values lie outside [-1, 11]" in violation.message
    assert violation.to_dict()["expected"] == [-1.0, 11.0]
    exact = Expectations(range_margin=0.0)
    assert (
        _one(validate(inside, profile, expectations=exact).violations, "out_of_range", "x").count
        == 2
    )
    assert validate(data.drop_null(), profile, expectations=Expectations(range_margin=None)).ok
    assert validate(
        data.drop_null(), profile, expectations=Expectations(max_out_of_range_fraction=0.5)
    ).ok
    assert Validator(profile).check({"x": np.array([5.0, 100.0])})[0].observed == (5.0, 100.0)


def test_unseen_categories_only_when_the_reference_listed_every_category() -> None:
    reference = pa.table({"s": ["a", "b", "c", "a"]})
    data = pa.table({"s": ["a", "z", None, "y", "z", "x", "w", "v", "u"]})
    report = validate(
        data, profile_table(reference), expectations=Expectations(forbid_unseen_nulls=False)
    )
    violation = _one(report.violations, "unseen_category", "s")
    assert violation.count == 7
    assert violation.observed == ("z", "y", "x", "w", "v")  # first 5 distinct, in row order
    assert "'z'" in violation.message
    assert validate(data.drop_null(), profile_table(reference, max_categories=2)).ok  # incomplete
    as_dictionary = pa.table({"s": data.column("s").dictionary_encode()}).drop_null()
    assert [v.code for v in validate(as_dictionary, profile_table(reference)).violations] == [
        "unseen_category"
    ]


def test_per_column_expectations_override_the_defaults() -> None:
    profile = profile_table(pa.table({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
    data = pa.table({"x": [5.0], "y": [5.0]})
    loose = Expectations(per_column={"y": Expectations(range_margin=None)})
    assert [v.column for v in validate(data, profile, expectations=loose).violations] == ["x"]


def test_expectation_parameters_are_checked() -> None:
    with pytest.raises(InvalidInput, match="null_rate_tolerance must be a number >= 0") as info:
        Expectations(null_rate_tolerance=-0.1)
    assert info.value.field == "null_rate_tolerance"
    with pytest.raises(InvalidInput, match="range_margin"):
        Expectations(range_margin=float("nan"))


def _random_batch(rng: np.random.Generator, rows: int) -> pa.Table:
    """Data near the reference with random nulls, infinities, outliers and unseen categories."""
    x = rng.normal(10, 2, rows)
    x[rng.random(rows) < 0.05] = rng.choice([np.inf, -np.inf, 40.0, -30.0])
    age = rng.integers(10, 100, rows)
    cities = rng.choice(
        ["paris", "oslo", "rome", "lima", "kyiv", "baku"], rows, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]
    )
    return pa.table(
        {
            "x": pa.array(x, mask=rng.random(rows) < rng.choice([0.0, 0.02])),
            "age": pa.array(age, mask=rng.random(rows) < rng.choice([0.0, 0.02])),
            "nullable": pa.array(
                rng.normal(size=rows), mask=rng.random(rows) < rng.choice([0.05, 0.5])
            ),
            "city": pa.array(cities, mask=rng.random(rows) < 0.02),
            "plan": pa.array(rng.choice(["free", "pro", "team"], rows, p=[0.6, 0.38, 0.02])),
            "active": pa.array(rng.random(rows) < 0.3, mask=rng.random(rows) < 0.02),
            "seen": pa.array(
                np.datetime64("2024-01-01T00:00:00", "s") + rng.integers(0, 10**7, rows),
                type=pa.timestamp("s", tz="UTC"),
                mask=rng.random(rows) < 0.02,
            ),
        }
    )


def test_validator_agrees_with_validate_on_random_batches() -> None:
    profile = profile_table(_reference_table())
    rng = np.random.default_rng(5)
    for expectations in (Expectations(), Expectations(min_rows_for_rates=5, range_margin=0.0)):
        validator = Validator(profile, expectations)
        fired = set()
        for rows in [*rng.integers(1, 40, 150), 150, 800]:
            batch = _random_batch(rng, int(rows))
            expected = validate(batch, profile, expectations=expectations).violations
            assert validator.check(_columns(batch)) == expected, rows
            fired |= {v.code for v in expected}
        assert fired >= {"unexpected_null", "unexpected_inf", "out_of_range", "unseen_category"}
    assert "null_rate" in fired


def test_report_and_violations_are_json_able() -> None:
    profile = profile_table(pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}))
    report = validate(pa.table({"x": [9.0, np.inf], "s": ["c", "a"]}), profile)
    text = json.dumps(report.to_dict(), allow_nan=False)
    decoded = json.loads(text)
    assert decoded["ok"] is False
    assert [v["code"] for v in decoded["violations"]] == [
        "unexpected_inf",
        "out_of_range",
        "unseen_category",
    ]
    assert decoded["violations"][2]["observed"] == ["c"]
