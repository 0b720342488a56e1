"""What a server serves and how: deployments (endpoint name → model URI) and server limits.

Built from ``shipyard serve`` arguments or a YAML file::

    deployments:
      - name: churn
        model: models:/churn@production
        batching: {max_batch_size: 64, max_wait_ms: 2}
      - name: fraud
        model: models:/fraud@production
        features: fraud_v1        # a FeatureService: requests carry entity keys
        log: {sample_rate: 0.1, drop: [name], hash: [email]}
    port: 8080
    prediction_log: {flush_interval_s: 5, retention_days: 30}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shipyard.core.identifiers import parse_model_uri, validate_name
from shipyard.errors import InvalidInput


class BatchingConfig(BaseModel):
    """Dynamic batching: concurrent requests merged up to ``max_batch_size`` rows or
    ``max_wait_ms``, run once, and split back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(default=64, ge=1, le=1_000_000)
    max_wait_ms: float = Field(default=2.0, ge=0.0, le=10_000.0)


class BreakerConfig(BaseModel):
    """Circuit breaker per model version (see shipyard.core.breaker)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(default=20, ge=1)
    min_calls: int = Field(default=10, ge=1)
    failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    open_s: float = Field(default=10.0, ge=0.0)
    probes: int = Field(default=1, ge=1)


class FallbackConfig(BaseModel):
    """What answers while the primary fails or its breaker is open: another model version
    (a URI) or a constant prediction (one row, repeated for every input row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    constant: tuple[float, ...] | None = None

    @field_validator("model")
    @classmethod
    def _valid_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(parse_model_uri(value))
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc

    @model_validator(mode="after")
    def _exactly_one(self) -> FallbackConfig:
        if (self.model is None) == (self.constant is None):
            raise ValueError("a fallback names exactly one of 'model' or 'constant'")
        return self


class LogConfig(BaseModel):
    """What a deployment writes to the prediction log: the share of requests logged (chosen by
    a hash of the request id, so a request is logged or not wherever it is served), input
    columns left out, and input columns logged as HMAC-SHA256 of the value keyed by the
    event log's salt (PII that must stay joinable but unreadable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> LogConfig:
        both = sorted(set(self.drop) & set(self.hash))
        if both:
            raise ValueError(f"columns cannot be both dropped and hashed: {', '.join(both)}")
        return self


class PredictionLogConfig(BaseModel):
    """The server's prediction log: a queue of at most ``queue_rows`` rows not yet written
    (beyond it predictions are dropped and counted), flushed every ``flush_interval_s`` or
    at ``flush_rows``; with ``retention_days``, older hours are deleted (checked hourly)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    queue_rows: int = Field(default=100_000, ge=1)
    flush_rows: int = Field(default=10_000, ge=1)
    flush_interval_s: float = Field(default=5.0, gt=0.0)
    retention_days: float | None = Field(default=None, gt=0.0)


class DeploymentConfig(BaseModel):
    """One served endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str
    batching: BatchingConfig | None = None
    timeout_s: float = Field(default=30.0, gt=0.0)
    max_queue: int = Field(default=1024, ge=1)
    max_batch_rows: int = Field(default=10_000, ge=1)
    allow_nan: bool = True
    allow_inf: bool = False
    breaker: BreakerConfig = BreakerConfig()
    fallback: FallbackConfig | None = None
    cache_size: int = Field(default=0, ge=0)  # answers kept per version (0: no response cache)
    features: str | None = None  # a FeatureService: requests carry entity keys, not model inputs
    features_required: bool = False  # 400 when a feature is NOT_FOUND / OUTSIDE_TTL (else NaN)
    # Check inputs against the version's reference profile (register_model(reference_data=...)):
    # "reject" answers 400 naming the field, "count" serves and counts each violated expectation.
    validation: Literal["off", "count", "reject"] = "off"
    log: LogConfig = LogConfig()  # prediction log: sample rate, columns dropped or hashed

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            return validate_name(value, what="deployment name")
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc

    @field_validator("model")
    @classmethod
    def _valid_uri(cls, value: str) -> str:
        try:
            return str(parse_model_uri(value))
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int | None = Field(default=None, ge=0, le=65535)  # None: no gRPC front end
    workers: int = Field(default=1, ge=1, le=64)
    reload_interval_s: float = Field(default=10.0, gt=0.0)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    drain_s: float = Field(default=5.0, ge=0.0)
    access_log: bool = False  # JSON access logs with request id and trace context
    tls_cert_file: Path | None = None  # PEM certificate (chain); with tls_key_file: HTTPS and
    tls_key_file: Path | None = None  # TLS on the gRPC port
    shutdown_timeout_s: float = Field(default=30.0, ge=0.0)
    prediction_log: PredictionLogConfig = PredictionLogConfig()

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, value: tuple[DeploymentConfig, ...]) -> tuple[DeploymentConfig, ...]:
        names = [d.name for d in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"deployment names must be unique; repeated: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerConfig:
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(f"grpc_port must differ from port ({self.port})")
        return self


def deployment_from_uri(uri: str) -> DeploymentConfig:
    """``churn@production`` → a deployment named ``churn`` serving ``models:/churn@production``."""
    ref = parse_model_uri(uri)
    return DeploymentConfig(name=ref.name, model=str(ref))


def load_config(data: dict[str, Any]) -> ServerConfig:
    """Validate a server configuration, naming the first bad field."""
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "config"
        raise InvalidInput(f"server config field {where!r}: {error['msg']}", field=where) from exc


def read_config_file(path: Path, overrides: dict[str, Any]) -> ServerConfig:
    """Read a YAML server configuration; ``overrides`` (from the command line) win."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read server config {path}: {exc}", field="config") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"server config {path} must be a mapping", field="config")
    return load_config({**data, **overrides})
