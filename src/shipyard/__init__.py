"""shipyard: tracked runs, a model registry and model flavors — the base of a production ML stack.

The public SDK is what ``__all__`` lists; every other module is internal.
"""

from shipyard.errors import (
    AliasNotFound,
    ArtifactCorrupted,
    Conflict,
    InvalidInput,
    InvalidURI,
    MissingDependency,
    ModelNotFound,
    NotFound,
    RunNotFound,
    ShipyardError,
    VersionNotFound,
)
from shipyard.flavors import PythonModelPackage
from shipyard.flavors.base import LoadedModel
from shipyard.records import AliasEvent, Lineage, ModelVersion, RegisteredModel, Run
from shipyard.sdk import (
    alias_history,
    alias_version_at,
    analyze_experiment,
    create_experiment,
    get_model_version,
    lineage,
    load_model,
    log_outcome,
    register_model,
    rollback,
    seed_everything,
    set_alias,
    set_deployment_strategy,
    start_experiment,
    start_run,
    stop_experiment,
    use_workspace,
    workspace,
)
from shipyard.settings import Settings
from shipyard.tracking import ActiveRun
from shipyard.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "AliasEvent",
    "AliasNotFound",
    "ArtifactCorrupted",
    "Conflict",
    "InvalidInput",
    "InvalidURI",
    "Lineage",
    "LoadedModel",
    "MissingDependency",
    "ModelNotFound",
    "ModelVersion",
    "NotFound",
    "PythonModelPackage",
    "RegisteredModel",
    "Run",
    "RunNotFound",
    "Settings",
    "ShipyardError",
    "VersionNotFound",
    "Workspace",
    "__version__",
    "alias_history",
    "alias_version_at",
    "analyze_experiment",
    "create_experiment",
    "get_model_version",
    "lineage",
    "load_model",
    "log_outcome",
    "register_model",
    "rollback",
    "seed_everything",
    "set_alias",
    "set_deployment_strategy",
    "start_experiment",
    "start_run",
    "stop_experiment",
    "use_workspace",
    "workspace",
]
