"""The gateway's ASGI app (`Gateway`): who is calling, the rate limit, the HTTP proxy, `/healthz`,
`/metrics` and `/login`. What each request may do is decided in `policy.py`; the websocket proxy
is in `websocket.py`; the whole behaviour is described in the package's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..resources import MediaStore, media_store_from_env
from ..webhooks.settings import WebhookSettings
from .graphql_check import shared_pool
from .media import MediaRoutes
from .metrics import build_registry
from .policy import (
    COOKIE_NAME,
    HOP_BY_HOP,
    READ_METHODS,
    GraphQLJudge,
    GraphQLRequest,
    Refusal,
    has_body,
    is_graphql_path,
    is_same_origin,
    is_static,
    login_page,
    normalize_path,
    read_graphql_request,
    route_label,
    safe_next,
    too_many,
    upstream_headers,
)
from .ratelimit import RateDecision, RateLimiter
from .review import ReviewSite, graphql_url
from .settings import GatewaySettings
from .tokens import ROLES, Principal, TokenError, TokenVerifier
from .websocket import WebSocketProxy

log = logging.getLogger("autoedit.gateway")

CHECKERS_START_SECONDS = 120.0  # to start the GraphQL checker processes
REDIS_RETRY_SECONDS = 5.0  # after a Redis failure, requests pass unlimited this long before it is tried again
MAX_GRAPHQL_BODY = 1 << 20  # a GraphQL body is read whole to be judged
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class _Caller:
    principal: Principal | None
    error: TokenError | None
    via_cookie: bool
    client_id: str


class Gateway(WebSocketProxy):
    """The ASGI app. `Gateway(settings)` is what uvicorn serves; `instance` overrides DAGSTER_HOME for /metrics."""

    def __init__(
        self,
        settings: GatewaySettings,
        instance: Any = None,
        store: MediaStore | None = None,
        webhooks: WebhookSettings | None = None,
    ) -> None:
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
        # /review reads and records in the store AUTOEDIT_STORAGE names; bad webhook settings
        # stop the gateway here rather than at the first approval.
        store = store if store is not None else media_store_from_env()
        self.media = MediaRoutes(store, settings.max_upload_bytes, self.metrics)
        self.review = ReviewSite(
            store,
            webhooks if webhooks is not None else WebhookSettings.from_env(),
            graphql_url(settings.upstream),
            instance=None if source is None else source if callable(source) else (lambda: source),
        )
        self.media.in_flight = self._video_in_flight
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

    def _unauthorized(self, error: TokenError, conn: HTTPConnection) -> Response:
        self.metrics.auth_failures.labels(error.reason).inc()
        description = error.message.replace('"', "'").encode("ascii", "replace").decode()
        challenge = 'Bearer realm="autoedit"' + (
            "" if error.reason == "missing" else f', error="invalid_token", error_description="{description}"'
        )
        headers = {"WWW-Authenticate": challenge}
        if "text/html" in conn.headers.get("accept", "") and conn.scope["type"] == "http":
            page = login_page(safe_next(conn.scope["path"]), error.message)
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
                raise too_many(decision, self.settings.window_seconds)
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
        static = request.method in ("GET", "HEAD") and is_static(path) and route not in ("media", "uploads")
        decision = None if static else await self._rate_limit(caller.client_id)
        if decision is not None and not decision.allowed:
            raise too_many(decision, self.settings.window_seconds)
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
        if route == "review":
            assert self.http is not None
            return await self.review.handle(request, path, principal, self.http)
        if route in ("uploads", "media"):
            response = await self.media.handle(request, path, principal)
        elif is_graphql_path(path):
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
            body = await self._read_limited(request) if has_body(request) else b""
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

    async def _forward(
        self, request: Request, path: str, body: bytes | None, query_string: bytes, content_type: str | None
    ) -> Response:
        """Send upstream: `body` when the gateway read and judged it, else the client's body streamed."""
        assert self.http is not None
        target = self._upstream_target(path, query_string)
        headers = upstream_headers(request, content_type)
        content: Any = None
        if body is not None:
            content = body
        elif has_body(request):
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

    async def _video_in_flight(self, video_id: str) -> bool:
        assert self.http is not None
        return await self.review.in_flight(self.http, video_id)

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
        next_path = safe_next(form.get("next"))
        token = form.get("token")
        if not token:
            return HTMLResponse(login_page(next_path))
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
