"""``shipyard serve``: serve registered models over the Open Inference Protocol (REST and gRPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli.context import state
from shipyard.errors import InvalidInput
from shipyard.server.config import deployment_from_uri, load_config, read_config_file
from shipyard.server.process import serve as run_server


def serve(
    ctx: typer.Context,
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Models to serve, e.g. churn@production fraud/3.", show_default=False),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file listing deployments.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="REST port (default 8080).")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option("--grpc-port", help="gRPC port (Open Inference Protocol); off if not given."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    reload_interval_s: Annotated[
        float | None, typer.Option("--reload-interval", help="Seconds between alias checks.")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Turn on dynamic batching with this many rows at most.")
    ] = None,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait to fill a dynamic batch.")] = 2.0,
    drain_s: Annotated[
        float | None, typer.Option(help="Seconds of not-ready serving after SIGTERM.")
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request as JSON (request id, trace).")
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS (and TLS gRPC).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    prediction_log: Annotated[
        bool,
        typer.Option(
            "--prediction-log/--no-prediction-log",
            help="Log every prediction to the event log for monitoring (on by default).",
        ),
    ] = True,
) -> None:
    """Serve models by alias or version; follows alias moves without a restart."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "grpc_port": grpc_port,
            "workers": workers,
            "reload_interval_s": reload_interval_s,
            "drain_s": drain_s,
            "access_log": access_log or None,
            "tls_cert_file": tls_cert,
            "tls_key_file": tls_key,
            "prediction_log": None if prediction_log else {"enabled": False},
        }.items()
        if value is not None
    }
    if models:
        batching = (
            {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms}
            if max_batch_size is not None
            else None
        )
        overrides["deployments"] = [
            {**deployment_from_uri(uri).model_dump(), "batching": batching} for uri in models
        ]
    if config is not None:
        server_config = read_config_file(config, overrides)
    elif models:
        server_config = load_config(overrides)
    else:
        raise InvalidInput("name at least one model (e.g. churn@production) or pass --config")
    run_server(server_config, state(ctx).settings)
