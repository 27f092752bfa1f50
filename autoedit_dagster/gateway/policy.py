"""What a request may do, as plain functions of the request: the gateway's rules apart from its I/O.

A GraphQL request is judged as dagster-webserver will read it (`read_graphql_request`) and its
document checked in worker processes (`GraphQLJudge`); paths are normalised before they are
checked; cookie sessions must come from the gateway's own origin; only allow-listed headers go
upstream. A rule that refuses raises `Refusal`, which the app answers with its status and JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from .graphql_check import GraphQLLimits, check_document, shared_pool
from .ratelimit import RateDecision

COOKIE_NAME = "autoedit_token"
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade",
}  # fmt: skip
# The only request headers that travel upstream (besides the filtered cookie, a content-length the
# gateway recomputes and the X-Forwarded-* it sets): an allow-list, so no hop-by-hop trick
# (`Connection: Content-Type`) can remove one that was checked, and nothing unknown is smuggled.
FORWARDED_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "cache-control", "content-type", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "origin", "pragma", "range",
    "referer", "user-agent",
})  # fmt: skip
GRAPHQL_PARAMS = ("query", "variables", "operationName")  # what dagster-webserver reads from a request
GRAPHQL_TYPES = ("application/json", "application/graphql")
GATEWAY_PATHS = {"/healthz": "healthz", "/metrics": "metrics", "/login": "login", "/logout": "logout"}


class Refusal(Exception):
    """A request the gateway answers itself, with `status` and a JSON error."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail}, self.status, headers=self.headers)


def too_many(decision: RateDecision, window_seconds: int) -> Refusal:
    """The 429 for a client over its limit, with `Retry-After` (whole seconds until a request leaves the window)."""
    wait = max(1, math.ceil(decision.retry_after))
    return Refusal(
        429, "rate limited",
        f"more than {decision.limit} requests in {window_seconds} s from this client; "
        f"retry in {wait} s",
        {"Retry-After": str(wait), "X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": "0"},
    )  # fmt: skip


class GraphQLJudge:
    """Checks GraphQL documents within `GraphQLLimits` in worker processes (`graphql_check`), never on the
    event loop.

    Results (refusals included) are cached by the document's hash, not its text, so the cache's
    memory stays small whatever clients send; the UI sends the same few documents over and over.
    """

    def __init__(self, limits: GraphQLLimits, cache_size: int = 1024) -> None:
        self.limits = limits
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, frozenset[str] | str] = OrderedDict()

    async def operation_types(self, document: Any) -> frozenset[str]:
        if not isinstance(document, str):
            raise Refusal(400, "bad request", "the GraphQL query must be a string")
        encoded = document.encode("utf-8", "surrogatepass")
        if len(encoded) > self.limits.max_bytes:
            raise Refusal(400, "bad request",
                          f"GraphQL document of {len(encoded)} bytes; at most {self.limits.max_bytes}")  # fmt: skip
        key = hashlib.sha256(encoded).digest()
        result = self._cache.get(key)
        if result is None:
            result = await self._check(document)
            self._cache[key] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(result, str):
            raise Refusal(400, "bad request", result)
        return result

    async def _check(self, document: str) -> frozenset[str] | str:
        pool = shared_pool()
        executor = pool.executor
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, check_document, document, self.limits)
            return await asyncio.wait_for(future, self.limits.timeout)
        except TimeoutError:
            raise Refusal(400, "bad request",
                          f"GraphQL document not checked within {self.limits.timeout:g} s") from None  # fmt: skip
        except BrokenProcessPool:
            pool.restart(executor)
            raise Refusal(503, "service unavailable", "the GraphQL checker restarted: retry") from None

    async def check(self, document: Any, *, allow_mutations: bool) -> None:
        """`Refusal` for a missing, unreadable or oversized document, or a mutation the caller may not run."""
        if document is None:
            raise Refusal(400, "bad request", "no GraphQL query in the request")
        kinds = await self.operation_types(document)
        if "mutation" in kinds and not allow_mutations:
            raise Refusal(
                403, "forbidden", "viewer tokens may run GraphQL queries only; mutations need an operator token"
            )


@dataclass(frozen=True)
class GraphQLRequest:
    """What dagster-webserver will execute for an HTTP request to `/graphql`, and the exact bytes to send it."""

    document: Any  # the `query` the webserver reads (None: none; it answers 400)
    body: bytes | None  # the body to forward (None for GET/HEAD)
    content_type: str | None  # the one Content-Type to forward with it
    query_string: bytes  # the query string to forward


def read_graphql_request(method: str, headers: Any, body: bytes, query_string: bytes) -> GraphQLRequest:
    """Judge a `/graphql` request as dagster-webserver reads it (`dagster_webserver/graphql.py`), refusing
    anything it could read differently: a GET's query string only; a POST's body only, as JSON (one object)
    or `application/graphql`. The forwarded request is rebuilt from what was read."""
    params = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in params]
    if any(names.count(name) > 1 for name in GRAPHQL_PARAMS):
        raise Refusal(400, "bad request", "GraphQL parameters given more than once in the query string")
    canonical_query = urlencode(params).encode("latin-1") if params else b""
    if method in ("GET", "HEAD"):
        if body:
            raise Refusal(400, "bad request", f"a GraphQL {method} has no body: send the query in the query string")
        return GraphQLRequest(dict(params).get("query"), None, None, canonical_query)
    if method != "POST":
        return GraphQLRequest(None, body, None, canonical_query)  # the webserver answers 405
    if any(name in GRAPHQL_PARAMS for name in names):
        raise Refusal(400, "bad request", "a GraphQL POST carries its query in the body, not the query string")
    types = headers.getlist("content-type")
    media = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else None
    if media not in GRAPHQL_TYPES:
        raise Refusal(415, "unsupported media type",
                      "a GraphQL POST is one application/json object or an application/graphql document")  # fmt: skip
    if media == "application/graphql":
        try:
            document = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refusal(400, "bad request", f"GraphQL document is not UTF-8: {exc}") from exc
        return GraphQLRequest(document, body, media, canonical_query)
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refusal(400, "bad request", f"GraphQL request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise Refusal(400, "bad request", "a GraphQL request body is one JSON object (batches are not supported)")
    # Only the fields the webserver reads travel on, re-encoded: no duplicate key or encoding trick survives.
    kept = {name: payload[name] for name in GRAPHQL_PARAMS if name in payload}
    return GraphQLRequest(payload.get("query"), json.dumps(kept).encode(), media, canonical_query)


def request_origin(conn: HTTPConnection) -> str:
    """This gateway's origin as the client addressed it (scheme from a trusted proxy, host from Host)."""
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    return _canonical_origin(f"{scheme}://{conn.headers.get('host', '')}")


def _canonical_origin(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    except ValueError:
        return ""
    if not parts.hostname:
        return ""
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def is_same_origin(conn: HTTPConnection) -> bool:
    """A browser request from this site's own pages: its `Origin`, else its `Sec-Fetch-Site`, says so."""
    origin = conn.headers.get("origin")
    if origin is None:
        return conn.headers.get("sec-fetch-site") == "same-origin"
    return origin != "null" and _canonical_origin(origin) == request_origin(conn) != ""


def normalize_path(path: str) -> str:
    """Resolve `.` and `..` segments (as URL libraries do before sending), so the path checked is the path sent."""
    segments: list[str] = []
    parts = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for segment in parts:
        if segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if parts and parts[-1] in (".", "..") and not normalized.endswith("/"):
        normalized += "/"
    return normalized


def is_graphql_path(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1] == "graphql"


def route_label(path: str) -> str:
    if path in GATEWAY_PATHS:
        return GATEWAY_PATHS[path]
    if path == "/review" or path.startswith("/review/"):
        return "review"
    if path == "/uploads" or path.startswith(("/uploads/", "/media/")):
        return "media" if path.startswith("/media/") else "uploads"
    return "graphql" if is_graphql_path(path) else "ui"


def safe_next(target: str | None) -> str:
    """Only same-site paths after login: never `//host` or an absolute URL (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(next_path: str, message: str = "") -> str:
    note = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>AutoEditTATE sign in</title></head>
<body><h1>AutoEditTATE</h1>{note}
<form method="post" action="/login"><label>Token <input name="token" type="password" size="60" autofocus></label>
<input type="hidden" name="next" value="{html.escape(next_path)}"><button type="submit">Sign in</button></form>
<p>Ask an operator for a token (<code>autoedit token --role viewer</code>).</p></body></html>"""


def upstream_headers(conn: HTTPConnection, content_type: str | None = None) -> list[tuple[str, str]]:
    """The allow-listed headers (`FORWARDED_HEADERS`), our cookie removed, and the X-Forwarded-* we vouch
    for; `content_type` replaces the client's (a judged GraphQL request carries the canonical one)."""
    headers: list[tuple[str, str]] = []
    for raw_name, raw_value in conn.headers.raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            kept = [c for c in value.split(";") if c.strip() and c.strip().split("=", 1)[0].strip() != COOKIE_NAME]
            if kept:
                headers.append((name, ";".join(kept).strip()))
        elif name in FORWARDED_HEADERS and not (name == "content-type" and content_type is not None):
            headers.append((name, value))
    if content_type is not None:
        headers.append(("content-type", content_type))
    headers.append(("x-forwarded-for", conn.client.host if conn.client else ""))
    headers.append(("x-forwarded-proto", "https" if conn.url.scheme in ("https", "wss") else "http"))
    if host := conn.headers.get("host"):
        headers.append(("x-forwarded-host", host))
    return headers


async def viewer_ws_refusal(data: str | bytes, judge: GraphQLJudge) -> dict | None:
    """An error message for the client when a viewer's websocket message starts a mutation (else None)."""
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"type": "error", "payload": {"message": "websocket messages must be JSON (graphql-ws)"}}
    if not isinstance(message, dict) or message.get("type") not in ("start", "subscribe"):
        return None
    payload = message.get("payload")
    query = payload.get("query") if isinstance(payload, dict) else None
    try:
        await judge.check(query, allow_mutations=False)
    except Refusal as refusal:
        return {"type": "error", "id": message.get("id"), "payload": {"message": refusal.detail}}
    return None


def has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


STATIC_SUFFIXES = (".js", ".css", ".map", ".svg", ".png", ".ico", ".woff", ".woff2", ".ttf", ".json", ".txt")


def is_static(path: str) -> bool:
    """Files of the UI bundle (GET only reaches here for them), not GraphQL or pages."""
    clean = "/" + path.lstrip("/")
    return clean.startswith(("/static/", "/vendor/", "/fonts/")) or (
        not clean.startswith("/graphql") and clean.endswith(STATIC_SUFFIXES)
    )
