"""Online retrieval: the newest materialised values per entity, with TTL enforced at read time.

Each returned value carries a status: ``PRESENT``; ``NOT_FOUND`` (the entity was never
materialised); ``OUTSIDE_TTL`` (the stored value is older than the view's TTL at the read time, so
it is withheld — a stale value is not served as if it were current). On-demand features are computed
by the same function that builds training sets, from the fetched features and the request fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import InvalidInput
from shipyard.features.definitions import FeatureView, OnDemandFeatureView, split_ref
from shipyard.features.offline import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from shipyard.storage.online import OnlineRow, OnlineStore


class FeatureStatus(StrEnum):
    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_TTL = "OUTSIDE_TTL"


def namespace(view: str, version: int) -> str:
    """Where one applied version of a view lives in the online store."""
    return f"{view}@v{version}"


def _key_value(name: str, value: Any) -> int | str:
    if isinstance(value, bool) or value is None:
        raise InvalidInput(
            f"join key {name!r} is {value!r}; expected an integer or a string", field=name
        )
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        return value
    raise InvalidInput(
        f"join key {name!r} is {value!r}; expected an integer or a string", field=name
    )


def entity_key(join_keys: Sequence[str], values: Sequence[Any]) -> str:
    """The online store key of one entity: its join-key values, in the view's order, as JSON."""
    return orjson.dumps([_key_value(k, v) for k, v in zip(join_keys, values, strict=True)]).decode()


@dataclass(frozen=True)
class OnlinePlan:
    """Which stored features a request needs and which columns it returns, resolved once."""

    outputs: tuple[tuple[str, str, str], ...]  # (output column, view name, feature name)
    fetch: Mapping[
        str, tuple[str, ...]
    ]  # view name -> features to read (requested + transform inputs)
    transforms: tuple[OnDemandFeatureView, ...]
    join_keys: tuple[str, ...]
    request_fields: tuple[str, ...]


def plan(
    refs: Sequence[str],
    views: Mapping[str, FeatureView | OnDemandFeatureView],
    *,
    full_feature_names: bool = False,
) -> OnlinePlan:
    """Resolve ``view:feature`` references against the known views."""
    if not refs:
        raise InvalidInput("no features requested", field="features")
    outputs: list[tuple[str, str, str]] = []
    fetch: dict[str, list[str]] = {}
    transforms: dict[str, OnDemandFeatureView] = {}
    for ref in refs:
        view_name, feature = split_ref(ref)
        view = views.get(view_name)
        if view is None:
            raise InvalidInput(
                f"feature {ref!r}: no feature view {view_name!r}; "
                f"known: {', '.join(sorted(views))}",
                field="features",
            )
        if feature not in view.feature_names:
            raise InvalidInput(
                f"feature {ref!r}: view {view_name!r} has {', '.join(view.feature_names)}",
                field="features",
            )
        column = f"{view_name}__{feature}" if full_feature_names else feature
        outputs.append((column, view_name, feature))
        if isinstance(view, OnDemandFeatureView):
            transforms[view.name] = view
            for input_ref in view.input_refs():
                source_view, source_feature = split_ref(input_ref)
                fetch.setdefault(source_view, [])
                if source_feature not in fetch[source_view]:
                    fetch[source_view].append(source_feature)
        else:
            fetch.setdefault(view_name, [])
            if feature not in fetch[view_name]:
                fetch[view_name].append(feature)
    columns = [o[0] for o in outputs]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InvalidInput(
            f"features {dupes} are requested from more than one view; "
            "ask for full feature names (view__feature)",
            field="features",
        )
    join_keys: list[str] = []
    for view_name in fetch:
        view = views[view_name]
        if not isinstance(view, FeatureView):
            raise InvalidInput(
                f"on-demand view {view_name!r} cannot feed another on-demand view", field="features"
            )
        join_keys.extend(k for k in view.join_keys if k not in join_keys)
    request_fields = tuple(
        dict.fromkeys(f.name for t in transforms.values() for f in t.request_fields)
    )
    return OnlinePlan(
        outputs=tuple(outputs),
        fetch={k: tuple(v) for k, v in fetch.items()},
        transforms=tuple(transforms.values()),
        join_keys=tuple(join_keys),
        request_fields=request_fields,
    )


@dataclass(frozen=True)
class OnlineFeatures:
    """Feature values (column name → one value per entity row) and their statuses."""

    values: dict[str, list[Any]]
    statuses: dict[str, list[FeatureStatus]]

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.values, "statuses": self.statuses}

    def to_columns(self) -> dict[str, np.ndarray[Any, Any]]:
        """The values as NumPy columns (nulls become NaN in float columns, None otherwise)."""
        out: dict[str, np.ndarray[Any, Any]] = {}
        for name, values in self.values.items():
            array = np.asarray(values, dtype=object)
            try:
                out[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
            except (TypeError, ValueError):
                out[name] = array
        return out


def read_online(
    the_plan: OnlinePlan,
    entity_rows: Mapping[str, Sequence[Any]],
    *,
    store: OnlineStore,
    views: Mapping[str, FeatureView | OnDemandFeatureView],
    versions: Mapping[str, int],
    now: datetime,
    request_data: Mapping[str, Sequence[Any]] | None = None,
) -> OnlineFeatures:
    """Read the plan's features for ``entity_rows`` (join key → values) at time ``now``."""
    n = _row_count(entity_rows, request_data)
    now_s = now.timestamp()
    fetched: dict[tuple[str, str], tuple[list[Any], list[FeatureStatus]]] = {}
    for view_name, features in the_plan.fetch.items():
        view = views[view_name]
        assert isinstance(view, FeatureView)
        for key in view.join_keys:
            if key not in entity_rows:
                raise InvalidInput(
                    f"entity rows lack join key {key!r} needed by view {view_name!r}", field=key
                )
        columns = [entity_rows[k] for k in view.join_keys]
        keys = [entity_key(view.join_keys, values) for values in zip(*columns, strict=True)]
        rows = store.read(namespace(view_name, versions[view_name]), keys)
        ttl_s = None if view.ttl is None else view.ttl.total_seconds()
        row_status = [_status(row, ttl_s, now_s) for row in rows]
        for feature in features:
            values = [
                row.values.get(feature)
                if row is not None and status is FeatureStatus.PRESENT
                else None
                for row, status in zip(rows, row_status, strict=True)
            ]
            statuses = [
                FeatureStatus.NOT_FOUND
                if status is FeatureStatus.PRESENT and row is not None and feature not in row.values
                else status
                for row, status in zip(rows, row_status, strict=True)
            ]
            fetched[(view_name, feature)] = (values, statuses)
    computed = _run_transforms(the_plan, fetched, request_data or {}, n)
    values_out: dict[str, list[Any]] = {}
    statuses_out: dict[str, list[FeatureStatus]] = {}
    for column, view_name, feature in the_plan.outputs:
        values, statuses = fetched.get((view_name, feature)) or computed[(view_name, feature)]
        values_out[column] = values
        statuses_out[column] = statuses
    return OnlineFeatures(values_out, statuses_out)


def _status(row: OnlineRow | None, ttl_s: float | None, now_s: float) -> FeatureStatus:
    if row is None:
        return FeatureStatus.NOT_FOUND
    if ttl_s is not None and now_s - row.event_ts > ttl_s:
        return FeatureStatus.OUTSIDE_TTL
    return FeatureStatus.PRESENT


def _row_count(
    entity_rows: Mapping[str, Sequence[Any]], request_data: Mapping[str, Sequence[Any]] | None
) -> int:
    lengths = {name: len(values) for name, values in entity_rows.items()}
    lengths.update({name: len(values) for name, values in (request_data or {}).items()})
    if len(set(lengths.values())) > 1:
        raise InvalidInput(
            f"entity rows and request data have different lengths: {lengths}", field="entities"
        )
    if not lengths or next(iter(lengths.values())) == 0:
        raise InvalidInput("no entity rows given", field="entities")
    return next(iter(lengths.values()))


_WORST = (FeatureStatus.NOT_FOUND, FeatureStatus.OUTSIDE_TTL)


def _run_transforms(
    the_plan: OnlinePlan,
    fetched: Mapping[tuple[str, str], tuple[list[Any], list[FeatureStatus]]],
    request_data: Mapping[str, Sequence[Any]],
    n: int,
) -> dict[tuple[str, str], tuple[list[Any], list[FeatureStatus]]]:
    out: dict[tuple[str, str], tuple[list[Any], list[FeatureStatus]]] = {}
    for transform in the_plan.transforms:
        columns: dict[str, np.ndarray[Any, Any]] = {}
        statuses = [FeatureStatus.PRESENT] * n
        for field in transform.request_fields:
            if field.name not in request_data:
                raise InvalidInput(
                    f"request field {field.name!r} is needed by on-demand view "
                    f"{transform.name!r} ({field.dtype})",
                    field=field.name,
                )
            columns[field.name] = _typed(request_data[field.name], field.dtype, field.name)
        for ref in transform.input_refs():
            view_name, feature = split_ref(ref)
            values, input_statuses = fetched[(view_name, feature)]
            columns[feature] = np.array([np.nan if v is None else v for v in values])
            statuses = [
                s if s in _WORST else i for s, i in zip(statuses, input_statuses, strict=True)
            ]
        result = transform.transform(columns)
        for name, array in result.items():
            values_list: list[Any] = array.tolist()
            out[(transform.name, name)] = (values_list, list(statuses))
    return out


def _typed(values: Sequence[Any], dtype: str, name: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(values, dtype=object if dtype == "string" else dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"request field {name!r} expects {dtype}: {exc}", field=name) from exc


def rows_from_table(view: FeatureView, table: pa.Table) -> list[OnlineRow]:
    """Online rows from a table laid out as ``offline.latest_per_entity`` returns it: the join
    keys, ``event_timestamp`` and ``created_timestamp`` (UTC; null: none), then the features."""
    key_columns = [table.column(k).to_pylist() for k in view.join_keys]
    if len(key_columns) == 1:
        keys = [entity_key(view.join_keys, (value,)) for value in key_columns[0]]
    else:
        keys = [entity_key(view.join_keys, values) for values in zip(*key_columns, strict=True)]
    events = _epoch_seconds(table.column(EVENT_TIMESTAMP)).tolist()
    created = _epoch_seconds(table.column(CREATED_TIMESTAMP)).tolist()
    names = view.feature_names
    columns = [table.column(name).to_pylist() for name in names]
    return [
        OnlineRow(key, event, made, dict(zip(names, values, strict=True)))
        for key, event, made, *values in zip(keys, events, created, *columns, strict=True)
    ]


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """UTC timestamps as float seconds since the epoch (null → 0.0)."""
    micros = pc.fill_null(pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64()), 0)
    seconds: np.ndarray[Any, Any] = micros.to_numpy(zero_copy_only=False) / 1e6
    return seconds
