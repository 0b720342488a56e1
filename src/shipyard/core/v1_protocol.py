"""The simple v1 JSON prediction form: ``{"instances": [...]}`` or ``{"inputs": {...}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from shipyard.core.signature import Batch, Signature, TensorSpec
from shipyard.errors import InvalidInput

FORMS = (
    '{"instances": [{"col": value, ...}, ...]} (records), {"instances": [[v1, v2, ...], ...]} '
    '(rows in signature order) or {"inputs": {"col": [values...], ...}} (columns)'
)


def v1_batch(body: Any, signature: Signature) -> Batch:
    """Turn a parsed v1 request body into a batch checked against ``signature``."""
    if not isinstance(body, Mapping):
        raise InvalidInput(f"request body must be a JSON object: {FORMS}", field="body")
    if "instances" in body:
        data, field = body["instances"], "instances"
    elif "inputs" in body:
        data, field = body["inputs"], "inputs"
    else:
        raise InvalidInput(f"request body needs 'instances' or 'inputs': {FORMS}", field="body")
    if isinstance(signature.inputs, TensorSpec):
        return signature.coerce(_array(data, field))
    if isinstance(data, Mapping):
        return signature.coerce(dict(data), extra="reject")
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"'{field}' must be a non-empty list or an object: {FORMS}", field=field)
    if all(isinstance(row, Mapping) for row in data):
        return signature.coerce(_records_to_columns(data, field), extra="reject")
    if all(isinstance(row, list) for row in data):
        names = signature.column_names
        widths = {len(row) for row in data}
        if widths != {len(names)}:
            raise InvalidInput(
                f"'{field}' rows must each have {len(names)} values ({', '.join(names)}); "
                f"got lengths {sorted(widths)}",
                field=field,
            )
        columns = list(zip(*data, strict=True))
        return signature.coerce(dict(zip(names, columns, strict=True)), extra="reject")
    raise InvalidInput(f"'{field}' must hold records or rows, not a mix: {FORMS}", field=field)


def v1_columns(body: Any) -> dict[str, Any]:
    """The named columns of a v1 body (records or columns), without a signature to check."""
    if not isinstance(body, Mapping):
        raise InvalidInput(f"request body must be a JSON object: {FORMS}", field="body")
    field = "instances" if "instances" in body else "inputs"
    data = body.get(field)
    if isinstance(data, Mapping) and data:
        return dict(data)
    if isinstance(data, list) and data and all(isinstance(row, Mapping) for row in data):
        return _records_to_columns(data, field)
    raise InvalidInput(
        f"'{field}' must be records ({{name: value}} per row) or columns ({{name: [values]}})",
        field=field,
    )


def _records_to_columns(records: list[Mapping[str, Any]], field: str) -> dict[str, list[Any]]:
    names = list(records[0])
    for index, record in enumerate(records):
        if record.keys() != set(names):
            missing = sorted(set(names) - record.keys()) or sorted(record.keys() - set(names))
            raise InvalidInput(
                f"'{field}'[{index}] has different fields from the first record "
                f"(differs in {', '.join(missing)})",
                field=missing[0],
            )
    return {name: [record[name] for record in records] for name in names}


def _array(data: Any, field: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(data)
    except ValueError as exc:
        raise InvalidInput(f"'{field}' is not a rectangular array: {exc}", field=field) from exc
