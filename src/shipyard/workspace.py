"""A workspace: the metadata DB, the artifact store and the services built on them.

This is the edge where :class:`~shipyard.settings.Settings` become objects; everything below gets
what it needs passed in.
"""

from __future__ import annotations

import getpass
import logging
import math
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard import conversion
from shipyard.core.identifiers import ModelRef, parse_model_uri
from shipyard.core.oip import OUTPUT_NAME
from shipyard.core.parity import compare, uniform_rows
from shipyard.core.profile import Profile, as_table, profile_table
from shipyard.core.signature import Batch, Signature, infer_signature
from shipyard.errors import InvalidInput
from shipyard.experiments.store import Rollouts
from shipyard.features.catalog import FeatureCatalog
from shipyard.features.offline import TrainingSet
from shipyard.features.store import FeatureStore
from shipyard.flavors import flavor_for, get_flavor
from shipyard.flavors.base import LoadedModel
from shipyard.flavors.lightgbm import LoadedBooster
from shipyard.flavors.torch import LoadedModule
from shipyard.flavors.xgboost import OUTPUT_SOFTMAX, LoadedXGBoost
from shipyard.records import Lineage, ModelVersion, OptimizationResult
from shipyard.registry import Registry
from shipyard.settings import Settings
from shipyard.storage.artifacts import ArtifactStore, open_artifact_store
from shipyard.storage.database import Database, open_database
from shipyard.storage.events import EventLog, open_event_log
from shipyard.storage.online import open_online_store
from shipyard.tracking import ActiveRun, Tracker

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
EXAMPLE_PARQUET = "input_example.parquet"
EXAMPLE_NPY = "input_example.npy"
PROFILE_JSON = "reference_profile.json"
REFERENCE_PARQUET = "reference.parquet"
REFERENCE_ROWS = 1_000_000


class Workspace:
    """Everything one ``SHIPYARD_HOME`` / database / artifact store holds."""

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        self.user = settings.user or _current_user()
        self.database: Database = open_database(settings.resolved_database_url, migrate=migrate)
        self.store: ArtifactStore = open_artifact_store(
            settings.resolved_artifacts_url,
            cache_dir=settings.cache_dir,
            s3_endpoint_url=settings.s3_endpoint_url,
        )
        self.tracker = Tracker(self.database, self.store, user=self.user)
        self.registry = Registry(self.database, self.store, user=self.user)
        self.rollouts = Rollouts(self.database)  # deployment strategies and experiments
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._load_lock = threading.Lock()
        self._features: FeatureStore | None = None
        self._events: EventLog | None = None

    def close(self) -> None:
        if self._features is not None:
            self._features.close()
        if self._events is not None:
            self._events.close()
        self.database.close()

    @property
    def events(self) -> EventLog:
        """The event log (predictions, outcomes) on ``settings.resolved_event_log_url``."""
        if self._events is None:
            self._events = open_event_log(self.settings.resolved_event_log_url)
        return self._events

    @property
    def features(self) -> FeatureStore:
        """The feature store (opened on first use, on ``settings.online_store_url``)."""
        if self._features is None:
            self._features = FeatureStore(
                FeatureCatalog(self.database, self.store, user=self.user),
                open_online_store(self.settings.resolved_online_store_url),
            )
        return self._features

    # ----------------------------------------------------------------- runs
    def start_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ActiveRun:
        return self.tracker.start_run(experiment, name=name, tags=tags)

    # ------------------------------------------------------------- registry
    def register_model(
        self,
        name: str,
        model: Any,
        *,
        input_example: Any,
        run: ActiveRun | str | None = None,
        flavor: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        reference_data: Any = None,
    ) -> ModelVersion:
        """Save ``model`` with its flavor, infer its signature from ``input_example`` (checking
        that the saved model loads back and predicts on it), and register the next version.

        ``reference_data`` (the training data: a DataFrame, Arrow table or TrainingSet) is kept
        with the version — a sample of up to 1,000,000 rows and its profile — so that the
        server can validate requests against it and monitoring can compare live data with it.
        A TrainingSet also records its feature references and fingerprint as version tags.
        """
        if input_example is None:
            raise InvalidInput(
                "input_example is required: it defines the model's signature and warms it up "
                "when served",
                field="input_example",
            )
        chosen = get_flavor(flavor) if flavor is not None else flavor_for(model)
        signature = infer_signature(input_example)
        batch = signature.coerce(input_example)
        with tempfile.TemporaryDirectory(prefix="shipyard-register-") as folder:
            root = Path(folder)
            (root / MODEL_DIR).mkdir()
            options = chosen.save(model, root / MODEL_DIR, batch)
            loaded = chosen.load(root / MODEL_DIR, options)
            signature = signature.with_outputs(chosen.predict(loaded, batch))
            if batch.columns is not None:
                batch.frame().to_parquet(root / EXAMPLE_PARQUET, index=False)
            else:
                assert batch.tensor is not None
                np.save(root / EXAMPLE_NPY, batch.tensor, allow_pickle=False)
            if isinstance(reference_data, TrainingSet):
                tags = {**reference_data.lineage_tags(), **(tags or {})}
                reference_data = reference_data.to_arrow()
            if reference_data is not None:
                reference = _with_outputs(
                    as_table(reference_data).slice(0, REFERENCE_ROWS), signature, chosen, loaded
                )
                pq.write_table(reference, root / REFERENCE_PARQUET)
                profile = profile_table(reference)
                (root / PROFILE_JSON).write_bytes(orjson.dumps(profile.to_dict()))
            return self.registry.register(
                name,
                source=root,
                flavor=chosen.name,
                flavor_options=options,
                signature=signature.to_dict(),
                run_id=run.run_id if isinstance(run, ActiveRun) else run,
                description=description,
                tags=tags,
            )

    def load_model(self, uri: str | ModelRef) -> LoadedModel:
        """Load a model version by URI; each version is loaded (and verified) once per workspace."""
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        number = self.registry.resolve_number(ref)
        key = (ref.name, number)
        cached = self._loaded.get(key)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._loaded.get(key)
            if cached is None:
                cached = self._load_version(self.registry.get_version(ref.name, number))
                self._loaded[key] = cached
            return cached

    def clear_model_cache(self) -> None:
        """Forget loaded models; the next ``load_model`` of each version loads and verifies anew."""
        with self._load_lock:
            self._loaded.clear()

    def _load_version(self, version: ModelVersion) -> LoadedModel:
        path = self.registry.local_path(version)  # verifies every file's sha256
        flavor = get_flavor(version.flavor)
        model = flavor.load(path / MODEL_DIR, dict(version.flavor_options))
        logger.info("loaded %s (%s)", version.uri, version.flavor)
        return LoadedModel(
            name=version.name,
            version=version.version,
            flavor=flavor,
            model=model,
            signature=Signature.from_dict(version.signature),
        )

    def reference_dir(self, version: ModelVersion) -> Path | None:
        """The folder holding the version's reference data (``reference.parquet`` and
        ``reference_profile.json``): the newest one set later, else the one given at
        registration; None when there is none."""
        later = self.registry.reference_path(version)
        if later is not None:
            return later
        own = self.registry.local_path(version)
        return own if (own / REFERENCE_PARQUET).exists() else None

    def reference_profile(self, version: ModelVersion) -> Profile | None:
        """The profile of the version's reference data (None if it has none)."""
        folder = self.reference_dir(version)
        if folder is None:
            return None
        return Profile.from_dict(orjson.loads((folder / PROFILE_JSON).read_bytes()))

    def set_reference(self, uri: str, data: Any) -> int:
        """Keep ``data`` (a DataFrame or Arrow table with the model's inputs; a sample of up to
        1,000,000 rows) as the reference of a version, with the model's answers on it and its
        profile; returns the rows kept. Monitoring and request validation use it from now on."""
        version = self.registry.resolve(uri)
        loaded = self.load_model(version.uri)
        with tempfile.TemporaryDirectory(prefix="shipyard-reference-") as folder:
            root = Path(folder)
            reference = _with_outputs(
                as_table(data).slice(0, REFERENCE_ROWS),
                loaded.signature,
                loaded.flavor,
                loaded.model,
            )
            pq.write_table(reference, root / REFERENCE_PARQUET)
            (root / PROFILE_JSON).write_bytes(orjson.dumps(profile_table(reference).to_dict()))
            self.registry.set_reference(version, root, rows=reference.num_rows)
        return int(reference.num_rows)

    def log_training_set(
        self, run: ActiveRun, training_set: TrainingSet, name: str = "training_set"
    ) -> None:
        """Record a training set on a run: its content fingerprint, feature refs and definitions."""
        run.log_dataset(training_set.to_pandas(), name)
        run.set_tags(training_set.lineage_tags())

    def input_example(self, version: ModelVersion) -> Any:
        """The input example stored with a version (a DataFrame, or an array for tensors)."""
        path = self.registry.local_path(version)
        if (path / EXAMPLE_PARQUET).exists():
            return pd.read_parquet(path / EXAMPLE_PARQUET)
        return np.load(path / EXAMPLE_NPY, allow_pickle=False)

    def optimize_model(
        self,
        uri: str | ModelRef,
        *,
        tolerance: float = 1e-5,
        sample: Any = None,
        precision: str | None = None,
    ) -> OptimizationResult:
        """Convert a scikit-learn, LightGBM, XGBoost or PyTorch version to ONNX and register it
        as the next version of the same model, with the source's run (lineage) and tags naming
        the source and the parity measured.

        Parity: the source and the ONNX model predict on the stored input example plus
        ``sample`` (any input ``load_model`` takes; default: 1,000 seeded rows drawn across each
        column's range in the example, widened by 5%). When the largest absolute difference
        exceeds ``tolerance``, nothing is registered. ``precision`` is the ONNX input's float
        type: float32 by default (tree ensembles run in float32 only), float64 for scikit-learn
        models other than trees; a torch model keeps its own dtype.
        """
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise InvalidInput(
                f"tolerance must be a finite number >= 0, got {tolerance}", field="tolerance"
            )
        source = self.registry.resolve(uri)
        loaded = self.load_model(source.uri)
        conversion.check_convertible(loaded.signature)
        example = self.input_example(source)
        first = loaded.signature.coerce(example)
        rest = uniform_rows(first) if sample is None else loaded.signature.coerce(sample)
        expected = loaded.flavor.predict(loaded.model, first)
        converted = _convert_to_onnx(loaded, first, expected, precision)
        onnx = get_flavor("onnx")
        with tempfile.TemporaryDirectory(prefix="shipyard-optimize-") as folder:
            options = onnx.save(converted, Path(folder), first)
            session = onnx.load(Path(folder), options)
            parity = compare(
                np.concatenate((expected, loaded.flavor.predict(loaded.model, rest))),
                np.concatenate((onnx.predict(session, first), onnx.predict(session, rest))),
            )
        if not parity.within(tolerance):
            wider = source.flavor == "sklearn" and precision != "float64"
            raise InvalidInput(
                f"the ONNX conversion of {source.uri} differs from it by up to "
                f"{parity.max_abs_diff:.3g} (mean {parity.mean_abs_diff:.3g}) over {parity.rows} "
                f"rows, more than the tolerance {tolerance:g}; nothing was registered (raise the "
                "tolerance if this difference is acceptable"
                f"{', or try precision float64' if wider else ''})",
                field="tolerance",
            )
        version = self.register_model(
            source.name,
            converted,
            input_example=example,
            run=source.run_id,
            flavor="onnx",
            description=(
                f"ONNX conversion of version {source.version}: max abs diff "
                f"{parity.max_abs_diff:.3g} over {parity.rows} rows"
            ),
            tags={
                "optimized_from": source.uri,
                "parity_max_abs_diff": repr(parity.max_abs_diff),
                "parity_mean_abs_diff": repr(parity.mean_abs_diff),
                "parity_rows": str(parity.rows),
                "parity_tolerance": repr(float(tolerance)),
            },
        )
        logger.info(
            "optimized %s into %s (max abs diff %.3g over %d rows)",
            source.uri,
            version.uri,
            parity.max_abs_diff,
            parity.rows,
        )
        return OptimizationResult(
            source=source.uri,
            version=version,
            max_abs_diff=parity.max_abs_diff,
            mean_abs_diff=parity.mean_abs_diff,
            rows=parity.rows,
            tolerance=float(tolerance),
        )

    def lineage(self, uri: str) -> Lineage:
        """A version with the run that produced it: params, metrics, datasets, code version."""
        version = self.registry.resolve(uri)
        run = self.tracker.get_run(version.run_id) if version.run_id else None
        return Lineage(version=version, run=run)


def _convert_to_onnx(
    loaded: LoadedModel, example: Batch, expected: np.ndarray[Any, Any], precision: str | None
) -> bytes:
    """The loaded version as ONNX: each flavor's model object handed to its converter."""
    match loaded.model:
        case LoadedBooster(booster=booster):
            return conversion.lightgbm_to_onnx(booster, example, expected, precision=precision)
        case LoadedXGBoost(booster=booster, output=output, iteration_range=span, missing=missing):
            return conversion.xgboost_to_onnx(
                booster,
                example,
                expected,
                iteration_range=span,
                softmax=output == OUTPUT_SOFTMAX,
                missing=missing,
                precision=precision,
            )
        case LoadedModule(module=module, dtype=dtype):
            return conversion.torch_to_onnx(
                module, example, expected, dtype=dtype, precision=precision
            )
        case model if loaded.flavor.name == "sklearn":
            return conversion.sklearn_to_onnx(model, example, expected, precision=precision)
    raise InvalidInput(
        f"{loaded.uri} has flavor {loaded.flavor.name}; only versions of flavor sklearn, "
        "lightgbm, xgboost or torch can be converted to ONNX",
        field="uri",
    )


def _with_outputs(reference: pa.Table, signature: Signature, flavor: Any, loaded: Any) -> pa.Table:
    """The reference rows plus the model's answers on them, named as the prediction log names
    outputs (``out_output``, or ``out_output_<j>`` per column of a 2-D output), so that
    prediction drift compares like with like. Tensor-input models keep the rows only."""
    if not signature.is_columnar:
        return reference
    missing = [c for c in signature.column_names if c not in reference.column_names]
    if missing:
        raise InvalidInput(
            f"reference_data lacks the model's input columns {missing}", field="reference_data"
        )
    batch = signature.coerce(reference.select(list(signature.column_names)).to_pandas())
    output = np.asarray(flavor.predict(loaded, batch))
    if output.ndim == 2:
        for j in range(output.shape[1]):
            reference = reference.append_column(f"out_{OUTPUT_NAME}_{j}", pa.array(output[:, j]))
    elif output.ndim == 1:
        reference = reference.append_column(f"out_{OUTPUT_NAME}", pa.array(output))
    return reference


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
