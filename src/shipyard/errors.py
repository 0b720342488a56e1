"""Every error shipyard raises, with the HTTP status and stable code it maps to.

::

    ShipyardError                       500 internal
    ├── InvalidInput                    400 invalid_input       a value from the user is wrong
    │   └── InvalidURI                  400 invalid_uri         a model URI has an unknown form
    ├── Unauthorized                    401 unauthorized        write/admin call without a token
    ├── NotFound                        404 not_found
    │   ├── ModelNotFound               404 model_not_found
    │   ├── VersionNotFound             404 version_not_found
    │   ├── AliasNotFound               404 alias_not_found
    │   └── RunNotFound                 404 run_not_found
    ├── PayloadTooLarge                 413 payload_too_large   a request body over the limit
    ├── Conflict                        409 conflict            clashes with the current state
    ├── ArtifactCorrupted               500 artifact_corrupted  a stored file fails its sha256 check
    ├── InferenceFailed                 500 inference_failed    the model raised while predicting
    ├── MissingDependency               500 missing_dependency  an optional extra is not installed
    ├── StorageUnavailable              503 storage_unavailable database or object store unreachable
    ├── ModelNotReady                   503 model_not_ready     loading, or its load failed
    ├── Overloaded                      503 overloaded          the model's queue is full (shed)
    ├── CircuitOpen                     503 circuit_open        the model keeps failing; no fallback
    └── InferenceTimeout                504 inference_timeout   the model did not answer in time

Messages name the thing, the bad value and what is allowed, so that the CLI can print them as one
line and the server can return them as ``{"error": message}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType


class ShipyardError(Exception):
    """Base class of every shipyard error."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ShipyardError):
    """A value given by the user is not acceptable; ``field`` names it when known."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidURI(InvalidInput):
    status = 400
    code = "invalid_uri"


class Unauthorized(ShipyardError):
    status = 401
    code = "unauthorized"


class NotFound(ShipyardError):
    status = 404
    code = "not_found"


def _known(kind: str, names: Iterable[str]) -> str:
    listed = sorted(names)
    if not listed:
        return f"there are no {kind} yet"
    return f"known {kind}: {', '.join(listed)}"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"model {name!r} not found; {_known('models', known)}")
        self.name = name


class VersionNotFound(NotFound):
    code = "version_not_found"

    def __init__(self, name: str, version: int, known: Iterable[int]) -> None:
        versions = [str(v) for v in sorted(known)]
        super().__init__(
            f"model {name!r} has no version {version}; "
            f"versions: {', '.join(versions) if versions else 'none'}"
        )
        self.name = name
        self.version = version


class AliasNotFound(NotFound):
    code = "alias_not_found"

    def __init__(self, name: str, alias: str, known: Iterable[str]) -> None:
        super().__init__(f"model {name!r} has no alias {alias!r}; {_known('aliases', known)}")
        self.name = name
        self.alias = alias


class RunNotFound(NotFound):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id


class Conflict(ShipyardError):
    status = 409
    code = "conflict"


class ArtifactCorrupted(ShipyardError):
    status = 500
    code = "artifact_corrupted"


class MissingDependency(ShipyardError):
    status = 500
    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'shipyard[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require_package(package: str, extra: str) -> ModuleType:
    """Import an optional package on first use, or raise :class:`MissingDependency` naming the
    ``shipyard[extra]`` that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependency(package.split(".")[0], extra) from exc


class StorageUnavailable(ShipyardError):
    status = 503
    code = "storage_unavailable"


class ModelNotReady(ShipyardError):
    status = 503
    code = "model_not_ready"


class Overloaded(ShipyardError):
    """A bounded queue is full: the request is shed instead of waiting without bound."""

    status = 503
    code = "overloaded"


class InferenceTimeout(ShipyardError):
    status = 504
    code = "inference_timeout"


class PayloadTooLarge(ShipyardError):
    status = 413
    code = "payload_too_large"


class InferenceFailed(ShipyardError):
    status = 500
    code = "inference_failed"


class CircuitOpen(ShipyardError):
    """The model's circuit breaker is open and no fallback is configured."""

    status = 503
    code = "circuit_open"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
