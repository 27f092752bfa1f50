"""The gateway: authentication, roles and a shared rate limit in front of dagster-webserver.

An ASGI app (starlette, served by uvicorn through `autoedit gateway --upstream URL`) that proxies
HTTP (streamed both ways with httpx) and the UI's GraphQL websocket (`/graphql`, with the
`websockets` client) to the webserver, which has no authentication of its own.

Who gets in
    Every request but `/healthz` carries a JWT (`tokens.py`): `Authorization: Bearer <token>`,
    or, for a browser, which cannot add headers to page loads, the `autoedit_token` cookie that
    `/login?token=...` (or the form at `/login`) sets: HttpOnly, SameSite=Lax, expiring with the
    token, Secure over https. `/logout` clears it. A missing, malformed, expired or wrongly signed
    token gets 401 with a JSON body naming the reason.

What each role may do
    `operator`: everything. `viewer`: GET/HEAD/OPTIONS of pages, assets and downloads, and
    GraphQL queries and subscriptions: a mutation is refused with 403, as is any other write
    (POST to the REST endpoints). A token with only the `metrics` scope reads `/metrics` and
    nothing else. Over the websocket, each `start`/`subscribe` message from a viewer is checked
    too. For every role a mutation sent with GET is refused (405): cookies travel with
    cross-site GET navigations, so GET must stay read-only.

The request checked is the request forwarded
    Only an allow-list of end-to-end headers travels upstream (`FORWARDED_HEADERS`), never
    anything named by `Connection`, and the gateway sets the framing itself. A GraphQL request is
    read whole and judged as the webserver will read it: a GET's query string (no body allowed),
    or a POST's body (`application/json` object or `application/graphql`; any other type, a JSON
    batch, or GraphQL parameters in the query string as well are 400). What is forwarded is
    rebuilt from what was judged: the canonical Content-Type and the judged fields re-encoded.
    Every document is checked off the event loop, in worker processes (at the gateway's own priority)
    (`graphql_check.py`; results cached by hash), within `GraphQLLimits` (bytes, tokens, depth,
    aliases, fields and repeated fields with fragments expanded, time): past any of them, 400, so
    one client's huge query can stall neither the gateway nor, through it, the webserver.

Cookie sessions
    A request authenticated by the cookie that is not GET/HEAD/OPTIONS (and `POST /login`, and a
    websocket handshake) must come from the gateway's own origin: an `Origin` equal to it, or,
    without `Origin`, `Sec-Fetch-Site: same-origin`; else 403. Bearer tokens are not affected
    (no browser attaches them by itself).

How often
    Per client (the token's `sub`, else the remote address) at most AUTOEDIT_RATE_LIMIT requests
    in any 60-second window (a sliding log in Redis, one Lua script per request, Redis' own clock),
    so every replica sharing the Redis shares the limit. Over it: 429 with `Retry-After` (seconds
    until the oldest counted request leaves the window). A websocket counts once, at its
    handshake. If Redis cannot be reached the request is let through (authentication still
    applies), logged and counted (`autoedit_gateway_ratelimit_backend_errors_total`), and Redis is
    retried 5 s later rather than on every request; `/healthz` reports it.

Also
    `/healthz` (no auth): 200 when the upstream's `/server_info` and Redis answer, else 503, with
    each check's state in the JSON body. `/metrics`: Prometheus text (`metrics.py`), for a token
    with the `metrics` scope (`autoedit token --scope metrics`, what Prometheus sends with
    `authorization: {credentials_file: ...}`) or any role; operator tokens only with
    AUTOEDIT_METRICS_AUTH=operator. An unreachable or failing upstream is answered with 502
    and a JSON body saying what failed. The `Authorization` header and the token cookie are not
    forwarded upstream. Access logs (`autoedit.gateway`, JSON per `logs.py`) never include query
    strings, so `/login?token=` does not leak into logs.

Environment (read by `GatewaySettings.from_env`): AUTOEDIT_JWT_SECRET (at least 32 bytes, else
the gateway refuses to start), AUTOEDIT_JWT_PUBLIC_KEY, AUTOEDIT_REDIS_URL (default
redis://127.0.0.1:6379/0), AUTOEDIT_RATE_LIMIT (requests per minute, default 100, 0 disables),
AUTOEDIT_METRICS_AUTH (token|operator, default token), AUTOEDIT_TRUSTED_PROXIES (comma-separated
addresses or CIDR networks of the reverse proxies in front, e.g. nginx: only from these are
X-Forwarded-For, the client whose address is its rate-limit bucket, and X-Forwarded-Proto, which
makes the cookie Secure, believed; default none), AUTOEDIT_COOKIE_SECURE (1 forces the Secure
flag), AUTOEDIT_UPSTREAM_TIMEOUT (seconds, default 120), DAGSTER_HOME (the instance `/metrics`
reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import ipaddress
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import redis.asyncio as aioredis
import websockets
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from .graphql_check import GraphQLLimits, check_document, shared_pool
from .metrics import build_registry
from .tokens import ROLES, ConfigurationError, Principal, TokenError, TokenVerifier, check_secret, read_public_key

log = logging.getLogger("autoedit.gateway")

COOKIE_NAME = "autoedit_token"
DEFAULT_RATE_LIMIT = 100
WINDOW_SECONDS = 60
CHECKERS_START_SECONDS = 120.0  # to start the GraphQL checker processes
REDIS_RETRY_SECONDS = 5.0  # after a Redis failure, requests pass unlimited this long before it is tried again
MAX_GRAPHQL_BODY = 1 << 20  # a GraphQL body is read whole to be judged
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
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


# Settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewaySettings:
    upstream: str
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit: int = DEFAULT_RATE_LIMIT
    window_seconds: int = WINDOW_SECONDS
    dagster_home: str | None = None
    metrics_auth: str = "token"
    cookie_secure: bool = False
    upstream_timeout: float = 120.0
    key_prefix: str = "autoedit:ratelimit:"
    trusted_proxies: tuple[str, ...] = ()
    graphql_limits: GraphQLLimits = field(default_factory=lambda: GraphQLLimits())

    def __post_init__(self) -> None:
        if self.jwt_secret is not None:
            check_secret(self.jwt_secret)
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigurationError(
                    f"AUTOEDIT_TRUSTED_PROXIES must list IP addresses or CIDR networks, not {proxy!r}"
                ) from exc
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"--upstream must be an http(s) URL such as http://127.0.0.1:3000, not {self.upstream!r}"
            )
        if self.rate_limit < 0 or self.window_seconds <= 0:
            raise ConfigurationError("AUTOEDIT_RATE_LIMIT must be 0 (off) or a positive number of requests per minute")
        if self.metrics_auth not in ("token", "operator"):
            raise ConfigurationError(
                f"AUTOEDIT_METRICS_AUTH must be token (a metrics-scoped or any role's token) or operator, not "
                f"{self.metrics_auth!r}: /metrics is never public"
            )

    @classmethod
    def from_env(cls, upstream: str, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        try:
            rate_limit = int(env.get("AUTOEDIT_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
            timeout = float(env.get("AUTOEDIT_UPSTREAM_TIMEOUT") or 120)
        except ValueError as exc:
            raise ConfigurationError(f"AUTOEDIT_RATE_LIMIT / AUTOEDIT_UPSTREAM_TIMEOUT must be numbers: {exc}") from exc
        public_key = env.get("AUTOEDIT_JWT_PUBLIC_KEY")
        proxies = tuple(p.strip() for p in (env.get("AUTOEDIT_TRUSTED_PROXIES") or "").split(",") if p.strip())
        return cls(
            upstream=upstream,
            jwt_secret=env.get("AUTOEDIT_JWT_SECRET") or None,
            jwt_public_key=read_public_key(public_key) if public_key else None,
            redis_url=env.get("AUTOEDIT_REDIS_URL") or cls.redis_url,
            rate_limit=rate_limit,
            dagster_home=env.get("DAGSTER_HOME") or None,
            metrics_auth=(env.get("AUTOEDIT_METRICS_AUTH") or "token").lower(),
            cookie_secure=(env.get("AUTOEDIT_COOKIE_SECURE") or "").lower() in ("1", "true", "yes"),
            upstream_timeout=timeout,
            trusted_proxies=proxies,
        )


# Rate limit ------------------------------------------------------------------------------------

# A sliding log per client: the timestamps (Redis' clock, ms) of the requests let through in the
# last window. Atomic, so concurrent replicas never let more than `limit` through.
SLIDING_WINDOW_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds; 0 when allowed


class RateLimiter:
    """`limit` requests per `window_seconds` per client, counted in Redis."""

    def __init__(self, client: aioredis.Redis, limit: int, window_seconds: int, prefix: str) -> None:
        self.limit = limit
        self.window_ms = window_seconds * 1000
        self.prefix = prefix
        self._script = client.register_script(SLIDING_WINDOW_LUA)

    async def hit(self, client_id: str) -> RateDecision:
        allowed, remaining, retry_ms = await self._script(
            keys=[self.prefix + client_id], args=[self.limit, self.window_ms, uuid.uuid4().hex[:12]]
        )
        return RateDecision(bool(allowed), self.limit, int(remaining), max(0, int(retry_ms)) / 1000)


# What a viewer may do --------------------------------------------------------------------------


class Refusal(Exception):
    """A request the gateway answers itself, with `status` and a JSON error."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail}, self.status, headers=self.headers)


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
    return "graphql" if is_graphql_path(path) else "ui"


def _safe_next(target: str | None) -> str:
    """Only same-site paths after login: never `//host` or an absolute URL (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(next_path: str, message: str = "") -> str:
    note = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>AutoEditTATE sign in</title></head>
<body><h1>AutoEditTATE</h1>{note}
<form method="post" action="/login"><label>Token <input name="token" type="password" size="60" autofocus></label>
<input type="hidden" name="next" value="{html.escape(next_path)}"><button type="submit">Sign in</button></form>
<p>Ask an operator for a token (<code>autoedit token --role viewer</code>).</p></body></html>"""


# The app ---------------------------------------------------------------------------------------


@dataclass
class _Caller:
    principal: Principal | None
    error: TokenError | None
    via_cookie: bool
    client_id: str


class Gateway:
    """The ASGI app. `Gateway(settings)` is what uvicorn serves; `instance` overrides DAGSTER_HOME for /metrics."""

    def __init__(self, settings: GatewaySettings, instance: Any = None) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(secret=settings.jwt_secret, public_key=settings.jwt_public_key)
        self.judge = GraphQLJudge(settings.graphql_limits)
        source = instance
        if source is None and settings.dagster_home:
            import dagster as dg

            home = settings.dagster_home

            def source() -> Any:
                return dg.DagsterInstance.from_config(home)

        self.registry, self.metrics, self.collector = build_registry(source)
        upstream = urlsplit(settings.upstream.rstrip("/"))
        self._upstream = upstream
        self._base_path = upstream.path.rstrip("/")
        self.http: httpx.AsyncClient | None = None
        self.redis: aioredis.Redis | None = None
        self.limiter: RateLimiter | None = None
        self._last_backend_warning = 0.0
        self._redis_retry_at = 0.0
        self.app = Starlette(
            routes=[
                Route("/{path:path}", self.handle_http, methods=ALL_METHODS),
                WebSocketRoute("/{path:path}", self.handle_websocket),
            ],
            lifespan=self._lifespan,
        )
        # The client's address and scheme, from X-Forwarded-For/-Proto of a trusted proxy only
        # (uvicorn's own middleware: the right-most address not in the list is the client).
        self._asgi: Any = self.app
        if settings.trusted_proxies:
            self._asgi = ProxyHeadersMiddleware(self.app, trusted_hosts=list(settings.trusted_proxies))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._asgi(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # The GraphQL checkers are up before the first request (starting one takes seconds on a loaded host).
        checkers = shared_pool().started
        await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in checkers)), CHECKERS_START_SECONDS)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.upstream_timeout, connect=5.0),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        if self.settings.rate_limit > 0:
            self.redis = aioredis.Redis.from_url(
                self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self.limiter = RateLimiter(self.redis, self.settings.rate_limit, self.settings.window_seconds,
                                       self.settings.key_prefix)  # fmt: skip
        if self.collector is not None:
            threading.Thread(target=self.collector.warm_up, name="metrics-warm-up", daemon=True).start()
        log.info(
            "gateway ready",
            extra={"upstream": self.settings.upstream, "rate_limit": self.settings.rate_limit,
                   "algorithms": self.verifier.algorithms},
        )  # fmt: skip
        try:
            yield
        finally:
            await self.http.aclose()
            if self.redis is not None:
                await self.redis.aclose()
            if self.collector is not None:
                self.collector.close()

    # Who is calling ----------------------------------------------------------------------------

    def _identify(self, conn: HTTPConnection) -> _Caller:
        header = conn.headers.get("authorization")
        via_cookie = False
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
            if not token:
                error = TokenError("malformed", "malformed Authorization header: expected `Bearer <token>`")
                return _Caller(None, error, False, self._ip_id(conn))
        else:
            token = conn.cookies.get(COOKIE_NAME)
            via_cookie = token is not None
        try:
            principal = self.verifier.verify(token)
        except TokenError as exc:
            return _Caller(None, exc, via_cookie, self._ip_id(conn))
        client_id = f"sub:{principal.subject}" if principal.subject else self._ip_id(conn)
        return _Caller(principal, None, via_cookie, client_id)

    @staticmethod
    def _ip_id(conn: HTTPConnection) -> str:
        return f"ip:{conn.client.host if conn.client else 'unknown'}"

    async def _rate_limit(self, client_id: str) -> RateDecision | None:
        if self.limiter is None:
            return None
        now = time.monotonic()
        if now < self._redis_retry_at:  # Redis just failed: don't make every request wait for its timeout
            self.metrics.ratelimit_errors.inc()
            return None
        try:
            return await self.limiter.hit(client_id)
        except (aioredis.RedisError, OSError) as exc:
            self.metrics.ratelimit_errors.inc()
            self._redis_retry_at = now + REDIS_RETRY_SECONDS
            if now - self._last_backend_warning > 30:
                self._last_backend_warning = now
                log.warning(
                    "rate limit not applied: Redis unreachable", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
            return None

    def _too_many(self, decision: RateDecision) -> Refusal:
        wait = max(1, math.ceil(decision.retry_after))
        return Refusal(
            429, "rate limited",
            f"more than {decision.limit} requests in {self.settings.window_seconds} s from this client; "
            f"retry in {wait} s",
            {"Retry-After": str(wait), "X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": "0"},
        )  # fmt: skip

    def _unauthorized(self, error: TokenError, conn: HTTPConnection) -> Response:
        self.metrics.auth_failures.labels(error.reason).inc()
        description = error.message.replace('"', "'").encode("ascii", "replace").decode()
        challenge = 'Bearer realm="autoedit"' + (
            "" if error.reason == "missing" else f', error="invalid_token", error_description="{description}"'
        )
        headers = {"WWW-Authenticate": challenge}
        if "text/html" in conn.headers.get("accept", "") and conn.scope["type"] == "http":
            page = _login_page(_safe_next(conn.scope["path"]), error.message)
            return HTMLResponse(page, 401, headers=headers)
        return JSONResponse({"error": "unauthorized", "reason": error.reason, "detail": error.message}, 401,
                            headers=headers)  # fmt: skip

    # HTTP --------------------------------------------------------------------------------------

    async def handle_http(self, request: Request) -> Response:
        started = time.perf_counter()
        path = normalize_path(request.scope["path"])
        route = route_label(path)
        caller: _Caller | None = None
        try:
            if route == "healthz":
                response = await self._healthz()
            else:
                caller = self._identify(request)
                response = await self._handle_authenticated(request, path, route, caller)
        except Refusal as refusal:
            response = refusal.response()
        elapsed = time.perf_counter() - started
        role = caller.principal.label if caller and caller.principal else "anonymous"
        self.metrics.requests.labels(route, request.method, str(response.status_code), role).inc()
        self.metrics.latency.labels(route).observe(elapsed)
        log.log(
            logging.DEBUG if route in ("healthz", "metrics") else logging.INFO,
            f"{request.method} {path} {response.status_code}",
            extra={"method": request.method, "path": path, "status": response.status_code,
                   "duration_ms": round(elapsed * 1000, 2), "client": request.client.host if request.client else None,
                   "subject": caller.principal.subject if caller and caller.principal else None, "role": role},
        )  # fmt: skip
        return response

    async def _handle_authenticated(self, request: Request, path: str, route: str, caller: _Caller) -> Response:
        if route in ("login", "logout"):
            # Counted against the address: the token in the form is not yet trusted.
            if (decision := await self._rate_limit(self._ip_id(request))) and not decision.allowed:
                raise self._too_many(decision)
            if route == "logout":  # works with an expired token too
                response = RedirectResponse("/login", 303)
                response.delete_cookie(COOKIE_NAME, path="/")
                return response
            if request.method == "POST" and not is_same_origin(request):
                # Login CSRF: another site must not sign a browser in under the attacker's token.
                raise Refusal(403, "forbidden", "sign in from this site's own /login page")
            return await self._login(request)
        # The UI's static files (a page load fetches some 60) are not API calls: only authenticated,
        # never counted, or one page view would spend most of a client's minute.
        static = request.method in ("GET", "HEAD") and _is_static(path)
        decision = None if static else await self._rate_limit(caller.client_id)
        if decision is not None and not decision.allowed:
            raise self._too_many(decision)
        if caller.error is not None or caller.principal is None:
            return self._unauthorized(caller.error or TokenError("missing", "no token"), request)
        principal = caller.principal
        if route == "metrics":
            return await self._metrics(principal)
        if principal.role not in ROLES:
            raise Refusal(403, "forbidden", f"a token scoped to {principal.label} may read /metrics only")
        if caller.via_cookie and request.method not in READ_METHODS and not is_same_origin(request):
            raise Refusal(403, "forbidden", f"cross-site {request.method} refused: a cookie session may change "
                          "things only from this site's own pages (Origin or Sec-Fetch-Site: same-origin)")  # fmt: skip
        if is_graphql_path(path):
            graphql = await self._authorize_graphql(request, principal)
            response = await self._forward(request, path, graphql.body, graphql.query_string, graphql.content_type)
        else:
            if not principal.is_operator and request.method not in READ_METHODS:
                detail = f"viewer tokens are read-only: {request.method} {path} needs an operator token"
                raise Refusal(403, "forbidden", detail)
            response = await self._forward(request, path, None, request.scope.get("query_string", b""), None)
        if decision is not None:
            response.headers["X-RateLimit-Limit"] = str(decision.limit)
            response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        return response

    async def _authorize_graphql(self, request: Request, principal: Principal) -> GraphQLRequest:
        """Judge a `/graphql` request as the webserver will read it; returns what to forward."""
        method = request.method
        if method in READ_METHODS:
            # A GET body is read (bounded) only to refuse it: the webserver would ignore it.
            body = await self._read_limited(request) if _has_body(request) else b""
        else:
            body = await self._read_limited(request)
        graphql = read_graphql_request(method, request.headers, body, request.scope.get("query_string", b""))
        if method in ("GET", "HEAD"):
            if graphql.document is not None:
                try:
                    await self.judge.check(graphql.document, allow_mutations=False)
                except Refusal as refusal:
                    if refusal.status == 403:
                        raise Refusal(405, "method not allowed", "GraphQL mutations must be sent with POST",
                                      {"Allow": "POST"}) from None  # fmt: skip
                    raise
        elif method == "POST":
            await self.judge.check(graphql.document, allow_mutations=principal.is_operator)
        elif not principal.is_operator and method != "OPTIONS":
            raise Refusal(403, "forbidden", f"viewer tokens may not {method} /graphql")
        return graphql

    @staticmethod
    async def _read_limited(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_GRAPHQL_BODY:
                raise Refusal(413, "payload too large", f"GraphQL bodies over {MAX_GRAPHQL_BODY} bytes are refused")
            chunks.append(chunk)
        return b"".join(chunks)

    def _upstream_target(self, path: str, query_string: bytes, scheme: str | None = None) -> str:
        # `%` is escaped again: the upstream decodes once, so it sees exactly the path checked here.
        quoted = quote(self._base_path + path, safe="/:@!$&'()*+,;=-._~")
        query = f"?{query_string.decode('latin-1')}" if query_string else ""
        netloc = self._upstream.netloc
        return f"{scheme or self._upstream.scheme}://{netloc}{quoted}{query}"

    @staticmethod
    def _upstream_headers(conn: HTTPConnection, content_type: str | None = None) -> list[tuple[str, str]]:
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

    async def _forward(
        self, request: Request, path: str, body: bytes | None, query_string: bytes, content_type: str | None
    ) -> Response:
        """Send upstream: `body` when the gateway read and judged it, else the client's body streamed."""
        assert self.http is not None
        target = self._upstream_target(path, query_string)
        headers = self._upstream_headers(request, content_type)
        content: Any = None
        if body is not None:
            content = body
        elif _has_body(request):
            content = request.stream()
            if (length := request.headers.get("content-length", "")).isdigit():
                headers.append(("content-length", length))
        upstream_request = self.http.build_request(request.method, target, headers=headers, content=content)
        try:
            upstream = await self.http.send(upstream_request, stream=True)
        except httpx.TimeoutException as exc:
            self.metrics.upstream_errors.labels("timeout").inc()
            raise Refusal(
                502, "bad gateway", f"upstream {self.settings.upstream} timed out ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            self.metrics.upstream_errors.labels("unreachable").inc()
            raise Refusal(
                502, "bad gateway", f"upstream {self.settings.upstream} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if upstream.status_code >= 500:
            self.metrics.upstream_errors.labels(f"http_{upstream.status_code}").inc()
        response = StreamingResponse(self._relay(upstream), status_code=upstream.status_code,
                                     background=BackgroundTask(upstream.aclose))  # fmt: skip
        response.raw_headers = [
            (name, value) for name, value in upstream.headers.raw if name.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        return response

    @staticmethod
    async def _relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            log.warning("upstream response cut short", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            await upstream.aclose()

    async def _healthz(self) -> Response:
        assert self.http is not None
        checks: dict[str, str] = {}
        try:
            reply = await self.http.get(self._upstream_target("/server_info", b""), timeout=3.0)
            checks["upstream"] = "ok" if reply.status_code < 500 else f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            checks["upstream"] = f"unreachable: {type(exc).__name__}"
        if self.redis is None:
            checks["redis"] = "disabled (AUTOEDIT_RATE_LIMIT=0)"
        else:
            try:
                await asyncio.wait_for(self.redis.ping(), timeout=2.0)
                checks["redis"] = "ok"
            except (aioredis.RedisError, OSError, TimeoutError) as exc:
                checks["redis"] = f"unreachable: {type(exc).__name__}"
        healthy = checks["upstream"] == "ok" and (self.redis is None or checks["redis"] == "ok")
        return JSONResponse({"status": "ok" if healthy else "unhealthy", **checks}, 200 if healthy else 503)

    async def _metrics(self, principal: Principal) -> Response:
        if self.settings.metrics_auth == "operator" and not principal.is_operator:
            raise Refusal(403, "forbidden", "/metrics needs an operator token (AUTOEDIT_METRICS_AUTH=operator)")
        if principal.role not in ROLES and "metrics" not in principal.scopes:
            raise Refusal(403, "forbidden", "/metrics needs a token with the metrics scope or a role")
        payload = await run_in_threadpool(generate_latest, self.registry)
        return Response(payload, headers={"content-type": CONTENT_TYPE_LATEST})

    async def _login(self, request: Request) -> Response:
        if request.method == "POST":
            form = dict(parse_qsl((await self._read_limited(request)).decode("utf-8", "replace")))
        else:
            form = dict(request.query_params)
        next_path = _safe_next(form.get("next"))
        token = form.get("token")
        if not token:
            return HTMLResponse(_login_page(next_path))
        try:
            principal = self.verifier.verify(token)
        except TokenError as exc:
            return self._unauthorized(exc, request)
        response = RedirectResponse(next_path, 303)
        response.set_cookie(
            COOKIE_NAME, token, max_age=max(1, int(principal.expires_at - time.time())), path="/", httponly=True,
            samesite="lax", secure=self.settings.cookie_secure or request.url.scheme == "https",
        )  # fmt: skip
        log.info("login", extra={"subject": principal.subject, "role": principal.role})
        return response

    # Websocket ---------------------------------------------------------------------------------

    async def handle_websocket(self, websocket: WebSocket) -> None:
        path = normalize_path(websocket.scope["path"])
        caller = self._identify(websocket)
        role = caller.principal.label if caller.principal else "anonymous"
        decision = await self._rate_limit(caller.client_id)
        try:
            if decision is not None and not decision.allowed:
                raise self._too_many(decision)
            if caller.error is not None or caller.principal is None:
                self.metrics.requests.labels("websocket", "GET", "401", role).inc()
                error = caller.error or TokenError("missing", "no token")
                await self._deny(websocket, self._unauthorized(error, websocket))
                return
            if caller.principal.role not in ROLES:
                raise Refusal(403, "forbidden", f"a token scoped to {caller.principal.label} may read /metrics only")
            if caller.via_cookie and not is_same_origin(websocket):
                # Cookies ride along on cross-site websocket handshakes: only our own pages may use them.
                raise Refusal(403, "forbidden", f"websocket from origin {websocket.headers.get('origin')} refused")
            await self._proxy_websocket(websocket, path, caller.principal)
        except Refusal as refusal:
            self.metrics.requests.labels("websocket", "GET", str(refusal.status), role).inc()
            await self._deny(websocket, refusal.response())

    @staticmethod
    async def _deny(websocket: WebSocket, response: Response) -> None:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008)

    async def _proxy_websocket(self, websocket: WebSocket, path: str, principal: Principal) -> None:
        scheme = "wss" if self._upstream.scheme == "https" else "ws"
        target = self._upstream_target(path, websocket.scope.get("query_string", b""), scheme)
        requested = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
        headers = [(n, v) for n, v in self._upstream_headers(websocket)
                   if n == "cookie" or n.startswith("x-forwarded-")]  # fmt: skip
        try:
            upstream = await ws_connect(
                target, subprotocols=requested or None, additional_headers=headers, proxy=None,
                open_timeout=10, max_size=None, ping_interval=20,
            )  # fmt: skip
        except websockets.InvalidStatus as exc:
            self.metrics.upstream_errors.labels("websocket").inc()
            raise Refusal(
                502, "bad gateway", f"upstream refused the websocket: HTTP {exc.response.status_code}"
            ) from exc
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            self.metrics.upstream_errors.labels("websocket").inc()
            raise Refusal(
                502, "bad gateway", f"upstream {self.settings.upstream} websocket unreachable: {type(exc).__name__}"
            ) from exc
        await websocket.accept(subprotocol=upstream.subprotocol)
        self.metrics.requests.labels("websocket", "GET", "101", principal.label).inc()
        self.metrics.websockets.inc()
        log.info("websocket open", extra={"path": path, "subject": principal.subject, "role": principal.role})
        try:
            await self._pump(websocket, upstream, principal)
        finally:
            self.metrics.websockets.dec()
            await upstream.close()

    async def _pump(self, websocket: WebSocket, upstream: Any, principal: Principal) -> None:
        async def from_client() -> tuple[str, int]:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return "client", int(message.get("code", 1000))
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if not principal.is_operator and (refusal := await viewer_ws_refusal(data, self.judge)) is not None:
                    await websocket.send_text(json.dumps(refusal))
                    continue
                await upstream.send(data)

        async def from_upstream() -> tuple[str, int]:
            try:
                async for data in upstream:
                    if isinstance(data, str):
                        await websocket.send_text(data)
                    else:
                        await websocket.send_bytes(data)
                return "upstream", upstream.close_code or 1000
            except websockets.ConnectionClosed as exc:
                return "upstream", exc.rcvd.code if exc.rcvd else 1011

        async def until_expiry() -> tuple[str, int]:
            await asyncio.sleep(max(0.0, principal.expires_at - time.time()))
            return "expired", 1008

        tasks = [asyncio.create_task(coro) for coro in (from_client(), from_upstream(), until_expiry())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        side, code = "upstream", 1011  # a side that failed (e.g. sending to a closed upstream)
        for task in done:
            if not task.cancelled() and task.exception() is None:
                side, code = task.result()
                break
        if side == "client":
            return
        reason = "token expired" if side == "expired" else ""
        sendable = (
            code if code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code < 5000 else 1011
        )
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=sendable, reason=reason)


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


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


_STATIC_SUFFIXES = (".js", ".css", ".map", ".svg", ".png", ".ico", ".woff", ".woff2", ".ttf", ".json", ".txt")


def _is_static(path: str) -> bool:
    """Files of the UI bundle (GET only reaches here for them), not GraphQL or pages."""
    clean = "/" + path.lstrip("/")
    return clean.startswith(("/static/", "/vendor/", "/fonts/")) or (
        not clean.startswith("/graphql") and clean.endswith(_STATIC_SUFFIXES)
    )
