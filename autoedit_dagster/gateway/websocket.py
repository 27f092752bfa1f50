"""The UI's GraphQL websocket, proxied: authenticated and rate-limited at its handshake, a viewer's
`start`/`subscribe` messages judged like its HTTP queries, and closed when the token expires.

`WebSocketProxy` is mixed into `Gateway` (app.py), whose identification, rate limit, metrics and
upstream it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import SplitResult

import websockets
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from .metrics import GatewayMetrics
from .policy import GraphQLJudge, Refusal, is_same_origin, normalize_path, too_many, upstream_headers, viewer_ws_refusal
from .settings import GatewaySettings
from .tokens import ROLES, Principal, TokenError

log = logging.getLogger("autoedit.gateway")


class WebSocketProxy:
    """The websocket half of `Gateway`, which sets these and provides `_identify`, `_rate_limit`,
    `_unauthorized` and `_upstream_target`."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    judge: GraphQLJudge
    _upstream: SplitResult

    async def handle_websocket(self, websocket: WebSocket) -> None:
        path = normalize_path(websocket.scope["path"])
        caller = self._identify(websocket)
        role = caller.principal.label if caller.principal else "anonymous"
        decision = await self._rate_limit(caller.client_id)
        try:
            if decision is not None and not decision.allowed:
                raise too_many(decision, self.settings.window_seconds)
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
        headers = [(n, v) for n, v in upstream_headers(websocket)
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
