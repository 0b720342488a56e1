"""The feature store: one object for applying definitions and reading features offline and online.

It keeps the applied definitions in memory (from ``apply``/``apply_file`` in this process, or from
the stored definitions file with ``load``) and hands the work to the modules that own it: the
catalog (versions), ``offline`` (point-in-time training sets), ``materialize`` and ``online``.
"""

from __future__ import annotations

import dataclasses
import logging
import runpy
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from shipyard.core.profile import ColumnProfile, Profile, as_table, profile_table
from shipyard.core.validation import validate
from shipyard.errors import InvalidInput, NotFound
from shipyard.features.catalog import FeatureCatalog, closure, kind_of, spec_fingerprint
from shipyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    split_ref,
)
from shipyard.features.materialize import MaterializeResult, materialize_view, push_rows, utc
from shipyard.features.offline import TrainingSet, get_historical_features
from shipyard.features.online import OnlineFeatures, OnlinePlan, plan, read_online
from shipyard.records import FeatureChange
from shipyard.storage.online import OnlineStore

logger = logging.getLogger(__name__)

RUN_NAME = "shipyard_features"
"""The module name definition files run under, the same when applied and when loaded back."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def load_definitions(path: Path) -> list[Definition]:
    """Run a definitions file and collect the entities, views and services it defines."""
    if not path.is_file():
        raise InvalidInput(f"definitions file {str(path)!r} does not exist", field="path")
    namespace = runpy.run_path(str(path), run_name=RUN_NAME)
    found = [
        value
        for value in namespace.values()
        if isinstance(value, (Entity, FeatureView, OnDemandFeatureView, FeatureService))
    ]
    if not found:
        raise InvalidInput(
            f"{str(path)!r} defines no Entity, FeatureView, OnDemandFeatureView or FeatureService",
            field="path",
        )
    return found


class FeatureStore:
    """Definitions, training sets, materialisation and online reads for one workspace."""

    def __init__(
        self,
        catalog: FeatureCatalog,
        online: OnlineStore,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.catalog = catalog
        self.online = online
        self.clock = clock
        self._definitions: dict[tuple[str, str], Definition] = {}
        self._versions: dict[str, int] = {}
        self._plans: dict[tuple[tuple[str, ...], bool], OnlinePlan] = {}

    # ------------------------------------------------------------ definitions
    def apply(
        self,
        definitions: Sequence[Definition],
        *,
        code: Path | None = None,
        new_version: bool = False,
    ) -> list[FeatureChange]:
        """Store the definitions (new versions where they changed) and use them from now on."""
        changes = self.catalog.apply(definitions, code=code, new_version=new_version)
        items = {(kind_of(d), d.name): d for d in closure(definitions)}
        for change in changes:
            self._use(items[(change.kind, change.name)], change.version)
        return changes

    def apply_file(self, path: Path, *, new_version: bool = False) -> list[FeatureChange]:
        """Apply every definition in a Python file and keep the file for other processes."""
        return self.apply(load_definitions(path), code=path, new_version=new_version)

    def load(self) -> None:
        """Load the newest applied definitions file (checksum-verified) into this store."""
        path = self.catalog.latest_code()
        if path is None:
            raise NotFound(
                "no feature definitions file is applied yet (shipyard features apply FILE)"
            )
        for definition in closure(load_definitions(path)):
            kind = kind_of(definition)
            record = self.catalog.get_definition(kind, definition.name)
            if record.fingerprint != spec_fingerprint(definition.spec()):
                logger.warning(
                    "%s %s: the stored file no longer gives applied version %d; skipped",
                    kind,
                    definition.name,
                    record.version,
                )
                continue
            self._use(definition, record.version)

    def _use(self, definition: Definition, version: int) -> None:
        self._definitions[(kind_of(definition), definition.name)] = definition
        if isinstance(definition, (FeatureView, OnDemandFeatureView)):
            self._versions[definition.name] = version
        self._plans.clear()

    @property
    def views(self) -> dict[str, FeatureView | OnDemandFeatureView]:
        """Feature views and on-demand views known to this store, by name."""
        return {
            name: d
            for (kind, name), d in self._definitions.items()
            if isinstance(d, (FeatureView, OnDemandFeatureView))
        }

    def get_view(self, name: str) -> FeatureView:
        view = self._definitions.get(("feature_view", name))
        if not isinstance(view, FeatureView):
            known = sorted(n for (k, n) in self._definitions if k == "feature_view")
            raise NotFound(
                f"feature view {name!r} is not loaded; known: {', '.join(known) or 'none'}"
            )
        return view

    def get_feature_service(self, name: str) -> FeatureService:
        service = self._definitions.get(("feature_service", name))
        if not isinstance(service, FeatureService):
            known = sorted(n for (k, n) in self._definitions if k == "feature_service")
            raise NotFound(
                f"feature service {name!r} is not loaded; known: {', '.join(known) or 'none'}"
            )
        return service

    def resolve(self, features: Sequence[str] | FeatureService | str) -> list[str]:
        """Feature references from a list, a FeatureService or the name of one."""
        if isinstance(features, FeatureService):
            return features.refs()
        if isinstance(features, str):
            return self.get_feature_service(features).refs()
        return list(features)

    # ---------------------------------------------------------------- offline
    def get_historical_features(
        self,
        entity_df: Any,
        features: Sequence[str] | FeatureService | str,
        *,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> TrainingSet:
        """A point-in-time-correct training set for the entity rows (see ``offline``); its
        ``validation`` checks the features against their views' reference profiles."""
        refs = self.resolve(features)
        training = get_historical_features(
            entity_df,
            refs,
            self.views,
            timestamp_column=timestamp_column,
            full_feature_names=full_feature_names,
            connection=connection,
        )
        reference = self._reference_for(refs, full_feature_names)
        if reference is not None:
            columns = [c.name for c in reference.columns]
            training.validation = validate(training.to_arrow().select(columns), reference)
            for violation in training.validation.violations:
                logger.warning("training set: %s", violation.message)
        return training

    def _reference_for(self, refs: Sequence[str], full_feature_names: bool) -> Profile | None:
        """The reference profiles of the views behind ``refs``, as one profile over the
        training set's column names (None when no view has one)."""
        columns: list[ColumnProfile] = []
        rows = 0
        profiles: dict[str, Profile | None] = {}
        for ref in refs:
            view_name, feature = split_ref(ref)
            view = self.views.get(view_name)
            if not isinstance(view, FeatureView):
                continue
            if view_name not in profiles:
                profiles[view_name] = self.catalog.reference_profile(
                    view_name, self._versions[view_name]
                )
            profile = profiles[view_name]
            column = None if profile is None else profile.find_column(feature)
            if profile is None or column is None:
                continue
            name = f"{view_name}__{feature}" if full_feature_names else feature
            columns.append(dataclasses.replace(column, name=name))
            rows = max(rows, profile.num_rows)
        return Profile(num_rows=rows, columns=tuple(columns)) if columns else None

    def set_reference_profile(self, view: str, data: Any) -> Profile:
        """Profile ``data`` (a DataFrame or Arrow table with the view's features) and make it
        the reference that materialisations and training sets of ``view`` are checked against."""
        feature_view = self.get_view(view)
        table = as_table(data)
        missing = [f for f in feature_view.feature_names if f not in table.column_names]
        if missing:
            raise InvalidInput(
                f"reference data for {view!r} lacks features {missing}", field=missing[0]
            )
        profile = profile_table(table.select(list(feature_view.feature_names)))
        self.catalog.set_reference_profile(view, self._versions[view], profile)
        return profile

    # ----------------------------------------------------------- materialise
    def _online_views(self, names: Sequence[str] | None) -> list[FeatureView]:
        if names is None:
            return [v for v in self.views.values() if isinstance(v, FeatureView) and v.online]
        return [self.get_view(n) for n in names]

    def materialize(
        self, start: datetime, end: datetime, *, views: Sequence[str] | None = None
    ) -> list[MaterializeResult]:
        """Write the newest value per entity in ``[start, end)`` of each (online) view."""
        return [
            materialize_view(
                view,
                self._versions[view.name],
                start,
                end,
                online=self.online,
                catalog=self.catalog,
            )
            for view in self._online_views(views)
        ]

    def materialize_incremental(
        self, end: datetime | None = None, *, views: Sequence[str] | None = None
    ) -> list[MaterializeResult]:
        """Materialise each view from its watermark (or, the first time, from ``end - ttl``)."""
        end = utc(end, "end") if end is not None else self.clock()
        results = []
        for view in self._online_views(views):
            version = self._versions[view.name]
            start = self.catalog.watermark(view.name, version)
            if start is None:
                if view.ttl is None:
                    raise InvalidInput(
                        f"feature view {view.name!r} has no ttl and was never materialised: "
                        "run materialize with an explicit start first",
                        field="start",
                    )
                start = end - view.ttl
            if start >= end:
                continue
            results.append(
                materialize_view(
                    view, version, start, end, online=self.online, catalog=self.catalog
                )
            )
        return results

    def push(self, view: str, data: Any) -> int:
        """Write streaming rows of one view straight to the online store; returns rows changed."""
        feature_view = self.get_view(view)
        return push_rows(feature_view, self._versions[view], data, online=self.online)

    # ----------------------------------------------------------------- online
    def online_plan(
        self, features: Sequence[str] | FeatureService | str, *, full_feature_names: bool = False
    ) -> OnlinePlan:
        """The resolved plan for a feature list (cached: the server resolves once per service)."""
        refs = tuple(self.resolve(features))
        key = (refs, full_feature_names)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = plan(refs, self.views, full_feature_names=full_feature_names)
        return found

    def get_online_features(
        self,
        features: Sequence[str] | FeatureService | str,
        entity_rows: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        *,
        request_data: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """Current values (and a status per value) for entity rows: columns or a list of dicts."""
        the_plan = self.online_plan(features, full_feature_names=full_feature_names)
        if isinstance(entity_rows, Sequence):
            columns: Mapping[str, Sequence[Any]] = {
                key: [row.get(key) for row in entity_rows] for key in the_plan.join_keys
            }
        else:
            columns = entity_rows
        return read_online(
            the_plan,
            columns,
            store=self.online,
            views=self.views,
            versions=self._versions,
            now=self.clock(),
            request_data=request_data,
        )

    def close(self) -> None:
        self.online.close()
