"""Online features on the server: ``POST /v1/features/online`` and feature-fed deployments.

A deployment that names a feature service takes entity keys and request-time fields instead of the
model's inputs: the server reads the service's features from the online store, runs its on-demand
transforms (the same functions that built the training set), and hands the model the columns its
signature names. Values the store does not have (``NOT_FOUND``) or withholds (``OUTSIDE_TTL``)
reach the model as missing (NaN); ``features_required`` turns them into a 400 naming the feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.features.online import FeatureStatus, OnlineFeatures
from shipyard.features.store import FeatureStore


def request_columns(tensors: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """OIP tensors as 1-D columns ([rows] or [rows, 1])."""
    columns = {}
    for name, array in tensors.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidInput(
                f"input {name!r} must have shape [rows] or [rows, 1], got {list(array.shape)}",
                field=name,
            )
        columns[name] = array
    return columns


class FeatureInputs:
    """Builds a feature-fed deployment's model inputs from entity keys and request fields."""

    def __init__(self, store: FeatureStore, service: str, *, required: bool) -> None:
        self.store = store
        self.service = service
        self.required = required
        self.plan = store.online_plan(service)

    def enrich(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        """The request's columns plus the service's features (missing values as NaN/None)."""
        plan = self.plan
        missing = [k for k in plan.join_keys if k not in columns]
        if missing:
            raise InvalidInput(
                f"request lacks entity key {missing[0]!r}; feature service {self.service!r} "
                f"needs {', '.join(plan.join_keys)}"
                + (
                    f" and request fields {', '.join(plan.request_fields)}"
                    if plan.request_fields
                    else ""
                ),
                field=missing[0],
            )
        entities = {k: _as_list(columns[k]) for k in plan.join_keys}
        request = {k: _as_list(columns[k]) for k in plan.request_fields if k in columns}
        found = self.store.get_online_features(self.service, entities, request_data=request)
        if self.required:
            _require_present(found)
        out: dict[str, Any] = dict(columns)
        out.update(found.to_columns())
        return out


def _as_list(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _require_present(found: OnlineFeatures) -> None:
    for name, statuses in found.statuses.items():
        for row, status in enumerate(statuses):
            if status is not FeatureStatus.PRESENT:
                raise InvalidInput(
                    f"feature {name!r} is {status.value} for row {row}; this deployment requires "
                    "every feature to be present",
                    field=name,
                )


def online_request(
    body: Any,
) -> tuple[list[str] | str, dict[str, list[Any]], dict[str, list[Any]], bool]:
    """Parse a ``POST /v1/features/online`` body.

    ``{"features": ["view:feature", ...]} or {"feature_service": "name"}``, ``"entities":
    {"key": [values...]}``, optional ``"request_data": {"field": [values...]}`` and
    ``"full_feature_names": bool``.
    """
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", field="body")
    service = body.get("feature_service")
    features = body.get("features")
    if (service is None) == (features is None):
        raise InvalidInput(
            "name exactly one of 'features' (a list of 'view:feature') or 'feature_service'",
            field="features",
        )
    if service is not None and not isinstance(service, str):
        raise InvalidInput("'feature_service' must be a string", field="feature_service")
    if features is not None and (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) for f in features)
    ):
        raise InvalidInput(
            "'features' must be a non-empty list of 'view:feature' strings", field="features"
        )
    entities = _columns(body.get("entities"), "entities", required=True)
    request = _columns(body.get("request_data"), "request_data", required=False)
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise InvalidInput("'full_feature_names' must be true or false", field="full_feature_names")
    chosen: list[str] | str = service if isinstance(service, str) else list(features or [])
    return chosen, entities, request, full


def _columns(raw: Any, field: str, *, required: bool) -> dict[str, list[Any]]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict) or (required and not raw):
        raise InvalidInput(f"'{field}' must be an object of name -> list of values", field=field)
    out = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise InvalidInput(
                f"'{field}.{name}' must be a non-empty list", field=f"{field}.{name}"
            )
        out[name] = values
    return out
