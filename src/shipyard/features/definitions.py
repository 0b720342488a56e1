"""Feature definitions in Python: entities, sources, feature views, on-demand views, services.

Definitions are plain immutable values. ``spec()`` gives each one's JSON form, which the catalog
stores (versioned) and fingerprints; the same objects drive offline retrieval, materialisation and
serving, so there is one description of every feature for training and for production.

A feature is referred to as ``"view:feature"``.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shipyard.errors import InvalidInput

Dtype = Literal["float32", "float64", "int32", "int64", "bool", "string"]
DTYPES: dict[str, pa.DataType] = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

Columns = Mapping[str, npt.NDArray[Any]]
"""A vectorised batch: column name → 1-D array, all of one length."""


def check_name(kind: str, name: str) -> str:
    """``name`` if it is an identifier (letters, digits, underscores; not starting with a digit)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: expected letters, digits and underscores, "
            "not starting with a digit, at most 128 characters",
            field=kind,
        )
    return name


@dataclass(frozen=True)
class Field:
    """One named, typed column."""

    name: str
    dtype: Dtype

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if self.dtype not in DTYPES:
            raise InvalidInput(
                f"field {self.name!r} has dtype {self.dtype!r}; "
                f"expected one of {', '.join(DTYPES)}",
                field=self.name,
            )

    @property
    def arrow_type(self) -> pa.DataType:
        return DTYPES[self.dtype]

    def spec(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype}


@dataclass(frozen=True)
class Entity:
    """A thing features describe (a customer, a driver), identified by one or more join keys."""

    name: str
    join_keys: tuple[str, ...]
    description: str = ""

    def __init__(self, name: str, join_keys: Sequence[str], description: str = "") -> None:
        object.__setattr__(self, "name", check_name("entity", name))
        keys = tuple(check_name("join key", k) for k in join_keys)
        if not keys:
            raise InvalidInput(f"entity {name!r} needs at least one join key", field="join_keys")
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "description", description)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "entity",
            "name": self.name,
            "join_keys": list(self.join_keys),
            "description": self.description,
        }


@dataclass(frozen=True)
class ParquetSource:
    """Parquet file(s): one path, a folder, or a glob; local or ``s3://``."""

    path: str

    def spec(self) -> dict[str, Any]:
        return {"type": "parquet", "path": self.path}


@dataclass(frozen=True)
class CsvSource:
    """A CSV file (or glob) with a header row."""

    path: str

    def spec(self) -> dict[str, Any]:
        return {"type": "csv", "path": self.path}


@dataclass(frozen=True)
class DuckDBSource:
    """A DuckDB query, run on ``database`` (a file path) or an in-memory database when None."""

    query: str
    database: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"type": "duckdb", "query": self.query, "database": self.database}


@dataclass(frozen=True)
class PostgresSource:
    """A query run on PostgreSQL (``url`` as SQLAlchemy/libpq takes it)."""

    query: str
    url: str

    def spec(self) -> dict[str, Any]:
        # The URL may carry a password: keep only what identifies the database.
        return {"type": "postgres", "query": self.query, "url": _redact(self.url)}


Source = ParquetSource | CsvSource | DuckDBSource | PostgresSource


def _redact(url: str) -> str:
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class FeatureView:
    """Features of some entities, read from a source with an event timestamp per row.

    ``ttl`` bounds how old a value may be and still describe the entity (``None``: no bound);
    ``created_timestamp_field`` breaks ties between rows with the same event time (the latest wins).
    """

    name: str
    entities: tuple[Entity, ...]
    features: tuple[Field, ...]
    source: Source
    timestamp_field: str
    ttl: timedelta | None
    created_timestamp_field: str | None = None
    online: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __init__(
        self,
        name: str,
        *,
        entities: Sequence[Entity],
        features: Sequence[Field],
        source: Source,
        timestamp_field: str,
        ttl: timedelta | None,
        created_timestamp_field: str | None = None,
        online: bool = True,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> None:
        set_ = object.__setattr__
        set_(self, "name", check_name("feature view", name))
        if not entities:
            raise InvalidInput(f"feature view {name!r} needs at least one entity", field="entities")
        set_(self, "entities", tuple(entities))
        set_(self, "features", _unique_fields(f"feature view {name!r}", features))
        set_(self, "source", source)
        set_(self, "timestamp_field", check_name("timestamp field", timestamp_field))
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInput(
                f"feature view {name!r}: ttl must be positive, got {ttl}", field="ttl"
            )
        set_(self, "ttl", ttl)
        if created_timestamp_field is not None:
            check_name("created timestamp field", created_timestamp_field)
        set_(self, "created_timestamp_field", created_timestamp_field)
        set_(self, "online", online)
        set_(self, "tags", dict(tags or {}))
        set_(self, "description", description)
        clash = set(self.join_keys) & {f.name for f in self.features}
        if clash:
            raise InvalidInput(
                f"feature view {name!r}: {sorted(clash)} are both join keys and features",
                field="features",
            )

    @property
    def join_keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        for entity in self.entities:
            keys.extend(k for k in entity.join_keys if k not in keys)
        return tuple(keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def select(self, *names: str) -> FeatureSelection:
        """A subset of this view's features, e.g. for a FeatureService."""
        return FeatureSelection(self, names)

    def __getitem__(self, names: Sequence[str]) -> FeatureSelection:
        return FeatureSelection(self, tuple(names))

    def refs(self) -> list[str]:
        return [f"{self.name}:{f.name}" for f in self.features]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "feature_view",
            "name": self.name,
            "entities": [e.spec() for e in self.entities],
            "features": [f.spec() for f in self.features],
            "source": self.source.spec(),
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_s": None if self.ttl is None else self.ttl.total_seconds(),
            "online": self.online,
            "tags": dict(sorted(self.tags.items())),
            "description": self.description,
        }


@dataclass(frozen=True)
class FeatureSelection:
    """Some features of one view (``view.select("a", "b")`` or ``view[["a", "b"]]``)."""

    view: FeatureView
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        known = set(self.view.feature_names)
        for name in self.names:
            if name not in known:
                raise InvalidInput(
                    f"feature view {self.view.name!r} has no feature {name!r}; "
                    f"it has {', '.join(self.view.feature_names)}",
                    field="features",
                )
        if not self.names:
            raise InvalidInput(
                f"select at least one feature of {self.view.name!r}", field="features"
            )

    def refs(self) -> list[str]:
        return [f"{self.view.name}:{n}" for n in self.names]


@dataclass(frozen=True)
class RequestSource:
    """Fields that arrive with the request (or, offline, as columns of the entity DataFrame)."""

    name: str
    schema: tuple[Field, ...]

    def __init__(self, name: str, schema: Sequence[Field]) -> None:
        object.__setattr__(self, "name", check_name("request source", name))
        object.__setattr__(self, "schema", _unique_fields(f"request source {name!r}", schema))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "request_source",
            "name": self.name,
            "schema": [f.spec() for f in self.schema],
        }


Transform = Callable[[Columns], Mapping[str, Any]]


@dataclass(frozen=True)
class OnDemandFeatureView:
    """Features computed by a vectorised function of request fields and other views' features.

    The function receives a mapping of column name → NumPy array (the request fields and the
    inputs' features under their bare names) and returns a mapping with one array per output
    feature. The same function runs when building training sets and when serving.
    """

    name: str
    sources: tuple[FeatureView | FeatureSelection | RequestSource, ...]
    features: tuple[Field, ...]
    function: Transform
    description: str = ""

    def __init__(
        self,
        name: str,
        *,
        sources: Sequence[FeatureView | FeatureSelection | RequestSource],
        features: Sequence[Field],
        function: Transform,
        description: str = "",
    ) -> None:
        set_ = object.__setattr__
        set_(self, "name", check_name("on-demand feature view", name))
        if not sources:
            raise InvalidInput(f"on-demand feature view {name!r} needs sources", field="sources")
        set_(self, "sources", tuple(sources))
        set_(self, "features", _unique_fields(f"on-demand feature view {name!r}", features))
        if not callable(function):
            raise InvalidInput(f"on-demand feature view {name!r}: function is not callable")
        set_(self, "function", function)
        set_(self, "description", description)
        names = list(self.input_names)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInput(
                f"on-demand feature view {name!r}: inputs {dupes} come from more than one source",
                field="sources",
            )

    @property
    def input_names(self) -> tuple[str, ...]:
        """The columns the function receives, in source order."""
        names: list[str] = []
        for source in self.sources:
            if isinstance(source, RequestSource):
                names.extend(f.name for f in source.schema)
            elif isinstance(source, FeatureSelection):
                names.extend(source.names)
            else:
                names.extend(source.feature_names)
        return tuple(names)

    @property
    def request_fields(self) -> tuple[Field, ...]:
        return tuple(f for s in self.sources if isinstance(s, RequestSource) for f in s.schema)

    def input_refs(self) -> list[str]:
        """The ``view:feature`` references the function reads from other views."""
        refs: list[str] = []
        for source in self.sources:
            if isinstance(source, (FeatureView, FeatureSelection)):
                refs.extend(source.refs())
        return refs

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def select(self, *names: str) -> OnDemandSelection:
        return OnDemandSelection(self, names)

    def refs(self) -> list[str]:
        return [f"{self.name}:{f.name}" for f in self.features]

    def transform(self, columns: Columns) -> dict[str, npt.NDArray[Any]]:
        """Run the function on a batch; check it returns every feature, one value per row."""
        rows = len(next(iter(columns.values()))) if columns else 0
        result = self.function({n: columns[n] for n in self.input_names})
        out: dict[str, npt.NDArray[Any]] = {}
        for f in self.features:
            if f.name not in result:
                raise InvalidInput(
                    f"on-demand feature view {self.name!r} returned no {f.name!r}; "
                    f"it returned {sorted(result)}",
                    field=f.name,
                )
            values = np.asarray(result[f.name])
            if values.shape != (rows,):
                raise InvalidInput(
                    f"on-demand feature view {self.name!r}: {f.name!r} has shape {values.shape}, "
                    f"expected ({rows},)",
                    field=f.name,
                )
            out[f.name] = values.astype(object if f.dtype == "string" else f.dtype, copy=False)
        return out

    def source_code(self) -> str:
        try:
            return inspect.getsource(self.function)
        except (OSError, TypeError):
            return repr(self.function)

    def spec(self) -> dict[str, Any]:
        def source_spec(s: FeatureView | FeatureSelection | RequestSource) -> dict[str, Any]:
            if isinstance(s, RequestSource):
                return s.spec()
            if isinstance(s, FeatureSelection):
                return {"kind": "selection", "view": s.view.name, "features": list(s.names)}
            return {"kind": "selection", "view": s.name, "features": list(s.feature_names)}

        code = self.source_code()
        return {
            "kind": "on_demand_feature_view",
            "name": self.name,
            "sources": [source_spec(s) for s in self.sources],
            "features": [f.spec() for f in self.features],
            "function": f"{self.function.__module__}.{self.function.__qualname__}",
            "function_sha256": hashlib.sha256(code.encode()).hexdigest(),
            "description": self.description,
        }


@dataclass(frozen=True)
class OnDemandSelection:
    """Some outputs of an on-demand view."""

    view: OnDemandFeatureView
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in self.names:
            if name not in self.view.feature_names:
                raise InvalidInput(
                    f"on-demand feature view {self.view.name!r} has no feature {name!r}",
                    field="features",
                )

    def refs(self) -> list[str]:
        return [f"{self.view.name}:{n}" for n in self.names]


def on_demand_feature_view(
    *,
    sources: Sequence[FeatureView | FeatureSelection | RequestSource],
    schema: Sequence[Field],
    name: str | None = None,
    description: str = "",
) -> Callable[[Transform], OnDemandFeatureView]:
    """Decorator form: ``@on_demand_feature_view(sources=[...], schema=[Field(...)])``."""

    def wrap(function: Transform) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name or function.__name__,
            sources=sources,
            features=schema,
            function=function,
            description=description or (function.__doc__ or "").strip(),
        )

    return wrap


ServiceItem = FeatureView | FeatureSelection | OnDemandFeatureView | OnDemandSelection


@dataclass(frozen=True)
class FeatureService:
    """A named list of the features a model uses."""

    name: str
    items: tuple[ServiceItem, ...]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __init__(
        self,
        name: str,
        features: Sequence[ServiceItem],
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        object.__setattr__(self, "name", check_name("feature service", name))
        if not features:
            raise InvalidInput(f"feature service {name!r} lists no features", field="features")
        object.__setattr__(self, "items", tuple(features))
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", dict(tags or {}))
        refs = self.refs()
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise InvalidInput(f"feature service {name!r} lists {dupes} twice", field="features")

    def refs(self) -> list[str]:
        return [ref for item in self.items for ref in item.refs()]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "feature_service",
            "name": self.name,
            "features": self.refs(),
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService


def split_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` → ``("view", "feature")``, or InvalidInput naming the reference."""
    view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not _NAME.match(view) or not _NAME.match(feature):
        raise InvalidInput(
            f"feature reference {ref!r} is not valid: expected 'view:feature'", field="features"
        )
    return view, feature


def _unique_fields(owner: str, fields: Iterable[Field]) -> tuple[Field, ...]:
    out = tuple(fields)
    if not out:
        raise InvalidInput(f"{owner} declares no features", field="features")
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{owner} declares {dupes} twice", field="features")
    return out
