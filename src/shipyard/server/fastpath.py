"""A raw-ASGI front for ``POST`` to the inference paths; every other request goes to the app.

Measured in-process on one LightGBM request (benchmarks/README.md, Serving): the Starlette
route cost ~120 µs against ~42 µs for the work itself (parse, validate, predict, encode,
metrics), so the hot path skips the router, middleware and Request/Response objects.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.server.inference import VERSION_HEADER, InferenceRoutes, Kind

_JSON = (b"content-type", b"application/json")


def match_inference_path(path: str) -> tuple[Kind, str, str | None] | None:
    """(kind, model, version) for ``/v2/models/M[/versions/V]/infer`` and
    ``/v1/models/M:predict``; None for any other path."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer":
        return "v2", parts[3], None
    if (
        len(parts) == 7
        and parts[1] == "v2"
        and parts[2] == "models"
        and parts[4] == "versions"
        and parts[6] == "infer"
    ):
        return "v2", parts[3], parts[5]
    if len(parts) == 4 and parts[1] == "v1" and parts[2] == "models":
        model, _, verb = parts[3].rpartition(":")
        if verb == "predict" and model:
            return "v1", model, None
    return None


# The request headers the inference routes read (ASGI servers give names in lower case).
_READ_HEADERS = frozenset(
    {b"authorization", b"content-encoding", b"content-length", b"inference-header-content-length"}
    | {b"x-request-id", b"x-shipyard-unit"}  # the prediction log's request id and unit key
)


_CACHED = 1024  # paths and header values remembered (clients choose paths: keep it bounded)
# Answer headers with a handful of values (versions, fallback kinds), kept encoded.
_CACHED_HEADERS = frozenset({VERSION_HEADER, "X-Shipyard-Fallback"})


class InferenceFastPath:
    def __init__(self, app: ASGIApp, routes: InferenceRoutes) -> None:
        self.app = app
        self.routes = routes
        self._encoded: dict[tuple[str, str], tuple[bytes, bytes]] = {}  # answer headers, as sent
        self._targets: dict[str, tuple[Kind, str, str | None]] = {}  # matched paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            target = self._targets.get(path)
            if target is None:
                target = match_inference_path(path)
                if target is not None and len(self._targets) < _CACHED:
                    self._targets[path] = target
        if target is None:
            await self.app(scope, receive, send)
            return
        headers = {}
        for key, value in scope["headers"]:  # a loop, not a comprehension: one frame fewer
            if key in _READ_HEADERS:
                headers[key.decode("latin-1")] = value.decode("latin-1")

        async def read_body(limit: int) -> bytes:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise InvalidInput("the client disconnected before sending the body")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                if not message.get("more_body", False):
                    return b"".join([*chunks, chunk]) if chunks else chunk
                chunks.append(chunk)

        kind, model, version = target
        answer = await self.routes.answer(kind, model, version, headers.get, read_body)
        response_headers = [_JSON, (b"content-length", str(len(answer.body)).encode())]
        for item in answer.headers.items():
            encoded = self._encoded.get(item)
            if encoded is None:
                encoded = (item[0].lower().encode(), item[1].encode())
                if item[0] in _CACHED_HEADERS and len(self._encoded) < _CACHED:
                    self._encoded[item] = encoded
            response_headers.append(encoded)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
