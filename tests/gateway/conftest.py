"""Real servers on loopback for the gateway tests: a fake upstream, gateways, a real dagster-webserver.

The fake upstream answers like dagster-webserver's routes (`/graphql` over HTTP and websocket,
`/server_info`, the REST writes, pages) and echoes what reached it, so a test can assert what the
gateway forwarded. Gateways run in-process (uvicorn in a thread) against the real Redis of
`testsupport.services`; the end-to-end module starts the real processes instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from autoedit_dagster.gateway.app import Gateway
from autoedit_dagster.gateway.settings import GatewaySettings
from autoedit_dagster.gateway.tokens import mint_token
from testsupport.services import redis_url  # noqa: F401  (a fixture, found by name; pytest_plugins is top-level only)

SECRET = "gateway-test-secret-" + "0123456789abcdef" * 2
REPO = Path(__file__).resolve().parents[2]
BIG_BODY = bytes(range(256)) * 8192  # 2 MiB, streamed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token(role: str, subject: str | None = None, ttl: int = 600, secret: str = SECRET) -> str:
    return mint_token(secret, role, subject=subject or f"{role}-{uuid.uuid4().hex[:8]}", ttl=ttl)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread.

    Like `autoedit gateway`, uvicorn reads no forwarded headers: the gateway does, from its trusted proxies."""

    def __init__(self, app, **config) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                           ws="websockets-sansio", proxy_headers=False, **config)
        )  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # a gateway first starts its GraphQL checker processes
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# The fake upstream ------------------------------------------------------------------------------


def build_fake_upstream() -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        if b"AutoeditUploadInFlight" in body:  # the gateway asking before `POST /uploads?replace=1`: no runs
            return JSONResponse({"data": {"runsOrError": {"__typename": "Runs", "results": []}}})
        return JSONResponse({
            "data": {"echo": {
                "method": request.method, "path": request.url.path, "query": request.url.query,
                "body": body.decode("utf-8", "replace"), "headers": dict(request.headers),
            }},
        })  # fmt: skip

    async def server_info(_request: Request) -> Response:
        return JSONResponse({"dagster_webserver_version": "fake"})

    async def big(_request: Request) -> Response:
        async def chunks():
            for start in range(0, len(BIG_BODY), 65536):
                yield BIG_BODY[start : start + 65536]

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def cookies(_request: Request) -> Response:
        response = PlainTextResponse("two cookies")
        response.set_cookie("first", "1")
        response.set_cookie("second", "2")
        return response

    async def fail(_request: Request) -> Response:
        return PlainTextResponse("upstream broke", status_code=500)

    async def ws_echo(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="graphql-ws" if "graphql-ws" in offered else None)
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                if message.get("type") == "close-please":
                    await websocket.close(code=4000, reason="asked to")
                    return
                await websocket.send_text(json.dumps({"echo": message, "cookie": websocket.headers.get("cookie")}))
        except WebSocketDisconnect:
            return

    return Starlette(
        routes=[
            Route("/server_info", server_info),
            Route("/graphql", echo, methods=["GET", "POST"]),
            Route("/report_asset_materialization/{key:path}", echo, methods=["POST"]),
            Route("/big", big),
            Route("/cookies", cookies),
            Route("/fail", fail),
            WebSocketRoute("/graphql", ws_echo),
            Route("/{path:path}", echo, methods=["GET", "HEAD", "POST", "DELETE"]),
        ]
    )


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[str]:
    server = ServerThread(build_fake_upstream())
    yield server.url
    server.stop()


@pytest.fixture
def start_gateway(redis_url: str) -> Iterator[Callable[..., str]]:  # noqa: F811 (the imported fixture)
    """Start gateways (each with its own rate-limit key space unless `key_prefix` is shared); returns the URL."""
    servers: list[ServerThread] = []

    def start(upstream: str, key_prefix: str | None = None, instance=None, store=None, webhooks=None,
              **settings) -> str:  # fmt: skip
        config = GatewaySettings(
            upstream=upstream, jwt_secret=SECRET, redis_url=redis_url,
            key_prefix=key_prefix or f"autoedit-test:{uuid.uuid4().hex}:", **settings,
        )  # fmt: skip
        server = ServerThread(Gateway(config, instance=instance, store=store, webhooks=webhooks))
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        yield http


# A real dagster-webserver ------------------------------------------------------------------------

WEBSERVER_FIXTURE = "dagster_webserver"


class Webserver:
    """dagster-webserver on a temp instance (DAGSTER_HOME) serving the tiny code location `upstream_defs`."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="autoedit-api-home-"))
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.home / "webserver.log", "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "DAGSTER_HOME": str(self.home), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(self.port),
             "-m", "tests.gateway.upstream_defs"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: {(self.home / 'webserver.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/server_info", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("dagster-webserver did not start in time")

    def stop(self) -> None:
        if self.process.returncode is not None:
            return
        # The webserver and the code server it spawned, together (their own process group).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def gateway_process(dagster_webserver, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, dict, Path]]:  # noqa: F811
    """`autoedit gateway` as its own process in front of the real webserver: (URL, its environment, its log)."""
    env = {
        **os.environ, "AUTOEDIT_JWT_SECRET": SECRET, "AUTOEDIT_REDIS_URL": redis_url, "AUTOEDIT_RATE_LIMIT": "1000",
        "DAGSTER_HOME": str(dagster_webserver.home), "AUTOEDIT_LOG_FORMAT": "json", "PYTHONPATH": str(REPO),
    }  # fmt: skip
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "autoedit_dagster.gateway.commands", "gateway", "--upstream", dagster_webserver.url,
             "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not become healthy"
            time.sleep(0.1)
        yield url, env, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # stuck (the old gateway, parsing on its event loop)
            process.kill()
            process.wait()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # dagster-webserver takes ~15 s to start: launch it now, while the other tests run.
    if any(WEBSERVER_FIXTURE in getattr(item, "fixturenames", ()) for item in items):
        server = Webserver()
        config._autoedit_webserver = server  # type: ignore[attr-defined]
        config.add_cleanup(server.stop)


@pytest.fixture(scope="session")
def dagster_webserver(pytestconfig: pytest.Config) -> Iterator[Webserver]:
    server = getattr(pytestconfig, "_autoedit_webserver", None) or Webserver()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
