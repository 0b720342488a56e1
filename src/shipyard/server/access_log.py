"""JSON access logs: one line per HTTP request or gRPC call with its request id and trace context.

The middleware accepts ``X-Request-ID`` (or makes one) and a W3C ``traceparent`` (continued as a
child span, or a new trace), answers with both headers, and logs method, path, status, duration,
request id and trace/span/parent ids to the ``shipyard.access`` logger. Only added when access
logging is on, so it costs nothing otherwise. gRPC calls log the same fields (method ``GRPC``,
path ``/inference.GRPCInferenceService/ModelInfer``, the status code's name) through
:func:`log_access`, reading the ids from the call's metadata and answering them as trailing
metadata.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.core.tracecontext import TraceContext, continue_trace

access_logger = logging.getLogger("shipyard.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id, trace = start_trace(headers.get("x-request-id"), headers.get("traceparent"))
        if "x-request-id" not in headers:  # the app (prediction log) sees the id it answers
            scope = {
                **scope,
                "headers": [*scope["headers"], (b"x-request-id", request_id.encode("latin-1"))],
            }
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"traceparent", trace.header().encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            log_access(
                scope["method"],
                scope["path"],
                status,
                time.perf_counter() - started,
                request_id=request_id,
                trace=trace,
                client=(scope.get("client") or ("", 0))[0],
            )


def start_trace(request_id: str | None, traceparent: str | None) -> tuple[str, TraceContext]:
    """The request id (given or new) and the trace context continued from ``traceparent``."""
    trace = continue_trace(traceparent, secrets.token_hex(8), secrets.token_hex(16))
    return request_id or secrets.token_hex(16), trace


def log_access(
    method: str,
    path: str,
    status: int | str,
    duration_s: float,
    *,
    request_id: str,
    trace: TraceContext,
    client: str,
) -> None:
    """One access line on the ``shipyard.access`` logger (formatted by :class:`JsonFormatter`)."""
    access_logger.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "access": {
                "request_id": request_id,
                "trace_id": trace.trace_id,
                "span_id": trace.span_id,
                "parent_id": trace.parent_id,
                "sampled": trace.sampled,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration_s * 1000, 3),
                "client": client,
            }
        },
    )


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object; access records carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            payload.update(access)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)
