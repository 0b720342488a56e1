"""Pure logic: URIs and names, alias-history rules, signatures, dataset fingerprints."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from shipyard.core.alias_history import rollback_target, version_at
from shipyard.core.fingerprint import describe_dataset, fingerprint_columns
from shipyard.core.identifiers import ModelRef, parse_model_uri, validate_alias, validate_name
from shipyard.core.signature import Signature, infer_signature
from shipyard.errors import Conflict, InvalidInput, InvalidURI
from shipyard.records import AliasEvent

T0 = datetime(2026, 3, 1, tzinfo=UTC)


# ----------------------------------------------------------------- identifiers
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        pytest.param("models:/churn/3", ModelRef("churn", version=3), id="version"),
        pytest.param("models:/churn@production", ModelRef("churn", alias="production"), id="alias"),
        pytest.param("churn@prod", ModelRef("churn", alias="prod"), id="bare-alias"),
        pytest.param("churn/12", ModelRef("churn", version=12), id="bare-version"),
        pytest.param("models:/churn/latest", ModelRef("churn"), id="latest"),
    ],
)
def test_parse_model_uri_accepts_every_documented_form(uri: str, expected: ModelRef) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    ["models:/churn", "models:/churn/0", "models:/churn/x", "models:/../x@a", "models:/a/1/2", ""],
)
def test_parse_model_uri_rejects_bad_forms_and_lists_the_accepted_ones(uri: str) -> None:
    with pytest.raises(InvalidURI, match="models:/NAME/VERSION"):
        parse_model_uri(uri)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 129, "a..b", "sp ace"])
def test_validate_name_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="not valid"):
        validate_name(name, what="model name")


@pytest.mark.parametrize("alias", ["3", "latest"])
def test_alias_cannot_look_like_a_version(alias: str) -> None:
    with pytest.raises(InvalidInput):
        validate_alias(alias)


# --------------------------------------------------------------- alias history
def _events(*steps: tuple[str, int | None]) -> list[AliasEvent]:
    out, previous = [], None
    for i, (action, version) in enumerate(steps):
        out.append(
            AliasEvent("m", "prod", version, previous, action, "u", None, T0 + timedelta(days=i))
        )
        previous = version
    return out


def test_version_at_answers_which_version_was_live_at_a_time() -> None:
    events = _events(("set", 1), ("set", 2), ("delete", None), ("set", 4))
    assert version_at(events, T0 - timedelta(seconds=1)) is None
    assert version_at(events, T0) == 1
    assert version_at(events, T0 + timedelta(days=1, hours=5)) == 2
    assert version_at(events, T0 + timedelta(days=2)) is None
    assert version_at(events, T0 + timedelta(days=30)) == 4


def test_rollback_walks_back_through_earlier_assignments() -> None:
    events = _events(("set", 1), ("set", 2), ("set", 3))
    assert rollback_target(events) == 2
    events = _events(("set", 1), ("set", 2), ("set", 3), ("rollback", 2))
    assert rollback_target(events) == 1
    events = _events(("set", 1), ("set", 2), ("set", 3), ("rollback", 2), ("rollback", 1))
    with pytest.raises(Conflict, match="no earlier version"):
        rollback_target(events)


def test_rollback_skips_deleted_states_and_repeats_of_the_current_version() -> None:
    assert rollback_target(_events(("set", 1), ("delete", None), ("set", 3))) == 1
    assert rollback_target(_events(("set", 1), ("set", 3), ("set", 3))) == 1
    assert rollback_target(_events(("set", 1), ("set", 2), ("rollback", 1), ("set", 5))) == 1


# ------------------------------------------------------------------ signatures
def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([30, 40, 50], dtype=np.int64),
            "income": [1.5, 2.5, np.nan],
            "city": ["a", "b", "c"],
            "active": [True, False, True],
        }
    )


def test_infer_signature_records_columns_and_dtypes() -> None:
    signature = infer_signature(_frame())
    assert signature.to_dict()["inputs"] == {
        "columns": [
            {"name": "age", "dtype": "int64"},
            {"name": "income", "dtype": "float64"},
            {"name": "city", "dtype": "string"},
            {"name": "active", "dtype": "bool"},
        ]
    }
    assert Signature.from_dict(signature.to_dict()) == signature


def test_infer_signature_of_an_array_is_a_tensor_with_a_free_batch_axis() -> None:
    signature = infer_signature(np.zeros((4, 3, 2), dtype=np.float32)).with_outputs(np.zeros((4,)))
    assert signature.to_dict() == {
        "inputs": {"tensor": {"dtype": "float32", "shape": [-1, 3, 2]}},
        "outputs": {"dtype": "float64", "shape": [-1]},
    }


def test_coerce_accepts_pandas_polars_dicts_records_and_arrays_alike() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    signature = infer_signature(frame)
    expected = np.array([[1.0, 3.0], [2.0, 4.0]])
    inputs = [
        frame,
        pl.from_pandas(frame),
        {"a": [1.0, 2.0], "b": [3.0, 4.0]},
        [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}],
        expected,
        frame[["b", "a"]],  # column order does not matter for named inputs
    ]
    for data in inputs:
        np.testing.assert_array_equal(signature.coerce(data).matrix(), expected)
    single = signature.coerce({"a": 1.0, "b": 3.0})
    assert single.num_rows == 1


def test_coerce_names_the_missing_extra_or_mistyped_field() -> None:
    signature = infer_signature(_frame())
    with pytest.raises(InvalidInput, match=r"missing column.*city") as missing:
        signature.coerce(_frame().drop(columns=["city"]))
    assert missing.value.field == "city"
    with pytest.raises(InvalidInput, match=r"unexpected column.*zip"):
        signature.coerce(_frame().assign(zip=1), extra="reject")
    assert signature.coerce(_frame().assign(zip=1)).num_rows == 3  # ignored by default
    with pytest.raises(InvalidInput, match="'age' expects int64 but got string") as typed:
        signature.coerce(_frame().assign(age=["x", "y", "z"]))
    assert typed.value.field == "age"
    with pytest.raises(InvalidInput, match="non-integer floats"):
        signature.coerce(_frame().assign(age=[1.5, 2.0, 3.0]))
    with pytest.raises(InvalidInput, match="has 2 rows"):
        signature.coerce({**{c: _frame()[c] for c in _frame().columns}, "city": ["a", "b"]})


def test_coerce_checks_tensor_shapes_and_adds_a_missing_batch_axis() -> None:
    signature = infer_signature(np.zeros((2, 3), dtype=np.float32))
    assert signature.coerce([1, 2, 3]).tensor.shape == (1, 3)  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match=r"shape \(2, 4\); expected \(N, 3\)"):
        signature.coerce(np.zeros((2, 4)))
    with pytest.raises(InvalidInput, match="expects float32"):
        signature.coerce(np.array([["a", "b", "c"]]))


def test_coerce_rejects_unsupported_input_types_with_the_accepted_ones() -> None:
    with pytest.raises(InvalidInput, match="pandas or polars DataFrame"):
        infer_signature(_frame()).coerce("not a table")


# ----------------------------------------------------------------- fingerprint
def test_fingerprint_is_sensitive_to_values_order_names_and_types() -> None:
    frame = _frame()
    base, schema, rows = describe_dataset(frame)
    assert rows == 3
    assert schema == {"age": "int64", "income": "float64", "city": "string", "active": "bool"}
    assert describe_dataset(frame.copy())[0] == base
    assert describe_dataset(frame.iloc[::-1].reset_index(drop=True))[0] != base
    assert describe_dataset(frame.assign(income=[1.5, 2.5, 0.0]))[0] != base
    assert describe_dataset(frame.rename(columns={"city": "town"}))[0] != base
    assert describe_dataset(frame.assign(age=frame["age"].astype(float)))[0] != base
    assert describe_dataset(frame.set_index("city", drop=False))[0] == base  # index ignored


def test_fingerprint_is_the_same_for_pandas_polars_and_dicts() -> None:
    frame = _frame()
    expected = describe_dataset(frame)[0]
    assert describe_dataset(pl.from_pandas(frame))[0] == expected
    assert describe_dataset({c: frame[c].to_numpy() for c in frame.columns})[0] == expected


def test_fingerprint_distinguishes_large_integers_and_null_from_empty_string() -> None:
    big = 2**53
    assert fingerprint_columns({"id": np.array([big])}) != fingerprint_columns(
        {"id": np.array([big + 1])}
    )
    assert fingerprint_columns({"s": ["", "x"]}) != fingerprint_columns({"s": [None, "x"]})


def test_fingerprint_is_stable_across_processes() -> None:
    code = (
        "import pandas as pd; from shipyard.core.fingerprint import describe_dataset;"
        "print(describe_dataset(pd.DataFrame({'a': [1, 2], 's': ['x', None]}))[0])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2)
    }
    local = describe_dataset(pd.DataFrame({"a": [1, 2], "s": ["x", None]}))[0]
    assert outputs == {local}
