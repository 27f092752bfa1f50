"""The gateway on loopback in front of a fake upstream, with the real Redis: auth, roles, limits, proxying."""

import asyncio
import json
import time

import httpx
import jwt
import pytest
import websockets
from websockets.asyncio.client import connect

from autoedit_dagster.gateway.graphql_check import GraphQLLimits
from autoedit_dagster.gateway.policy import COOKIE_NAME, GraphQLJudge, normalize_path, viewer_ws_refusal

from .conftest import BIG_BODY, SECRET, bearer, token

QUERY = {"query": "query Runs { runsOrError { __typename } }"}
MUTATION = {"query": "mutation Launch { launchRun(executionParams: {}) { __typename } }"}


@pytest.fixture
def gateway(start_gateway, fake_upstream) -> str:
    return start_gateway(fake_upstream)


def echoed(response: httpx.Response) -> dict:
    return response.json()["data"]["echo"]


# Authentication -------------------------------------------------------------------------------


def test_no_token_is_401_with_a_json_reason(client, gateway) -> None:
    response = client.post(f"{gateway}/graphql", json=QUERY)
    assert response.status_code == 401
    assert response.json()["reason"] == "missing"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("make_token", "expected"),
    [
        (lambda: "abc.def", "malformed"),
        (lambda: jwt.encode({"role": "operator", "exp": time.time() - 5}, SECRET), "expired"),
        (lambda: token("operator", secret="someone-elses-secret-" + "y" * 32), "signature"),
        (lambda: jwt.encode({"role": "operator"}, SECRET), "claims"),
    ],
    ids=["malformed", "expired", "wrong-signature", "no-exp"],
)
def test_bad_tokens_are_401_each_with_its_reason(client, gateway, make_token, expected) -> None:
    response = client.post(f"{gateway}/graphql", json=QUERY, headers=bearer(make_token()))
    assert response.status_code == 401
    body = response.json()
    assert body["reason"] == expected and body["error"] == "unauthorized" and body["detail"]


def test_non_bearer_authorization_is_refused(client, gateway) -> None:
    response = client.get(f"{gateway}/runs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401 and response.json()["reason"] == "malformed"


# Roles -----------------------------------------------------------------------------------------


def test_viewer_query_passes_without_the_token_upstream(client, gateway) -> None:
    response = client.post(f"{gateway}/graphql", json=QUERY, headers=bearer(token("viewer")))
    assert response.status_code == 200
    seen = echoed(response)
    assert json.loads(seen["body"]) == QUERY
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"json": MUTATION}, 403),
        ({"json": [QUERY, MUTATION]}, 400),  # batched: dagster-webserver cannot run a batch, so none passes
        ({"content": MUTATION["query"], "headers": {"content-type": "application/graphql"}}, 403),
        # A body the webserver ignores: it reads the query string instead.
        ({"params": MUTATION, "content": b"x=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         400),
        ({"json": {"query": "query A { a } mutation B { b }", "operationName": "A"}}, 403),
    ],
    ids=["json", "batched", "application-graphql", "query-string", "mixed-document"],
)  # fmt: skip
def test_viewer_mutations_are_refused_however_sent(client, gateway, request_kwargs, status) -> None:
    kwargs = dict(request_kwargs)
    headers = {**kwargs.pop("headers", {}), **bearer(token("viewer"))}
    response = client.post(f"{gateway}/graphql", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    if status == 403:
        assert "operator" in response.json()["detail"]


def test_viewer_may_not_write_elsewhere(client, gateway) -> None:
    response = client.post(f"{gateway}/report_asset_materialization/tate/render", headers=bearer(token("viewer")))
    assert response.status_code == 403
    assert client.get(f"{gateway}/assets/tate/render", headers=bearer(token("viewer"))).status_code == 200


def test_viewer_unparseable_graphql_is_400(client, gateway) -> None:
    response = client.post(f"{gateway}/graphql", json={"query": "query {"}, headers=bearer(token("viewer")))
    assert response.status_code == 400 and "syntax" in response.json()["detail"]


def test_operator_mutation_passes(client, gateway) -> None:
    response = client.post(f"{gateway}/graphql", json=MUTATION, headers=bearer(token("operator")))
    assert response.status_code == 200
    assert json.loads(echoed(response)["body"]) == MUTATION


def test_get_mutations_are_refused_for_everyone(client, gateway) -> None:
    """Cookies travel with cross-site GET navigations: a GET must never run a mutation."""
    response = client.get(f"{gateway}/graphql", params=MUTATION, headers=bearer(token("operator")))
    assert response.status_code == 405
    ok = client.get(f"{gateway}/graphql", params=QUERY, headers=bearer(token("viewer")))
    assert ok.status_code == 200 and echoed(ok)["method"] == "GET"


@pytest.mark.parametrize("path", ["/x/../graphql", "/./graphql", "/%2E%2E/graphql"])
def test_dot_segments_cannot_smuggle_a_get_mutation(client, gateway, path) -> None:
    response = client.get(f"{gateway}{path}", params=MUTATION, headers=bearer(token("viewer")))
    assert response.status_code == 405


def test_encoded_percent_reaches_upstream_as_checked(client, gateway) -> None:
    """`/%2567raphql` must stay `%67raphql` upstream (else the upstream would decode it to /graphql)."""
    response = client.get(f"{gateway}/%2567raphql", params=MUTATION, headers=bearer(token("viewer")))
    assert response.status_code == 200
    assert echoed(response)["path"] == "/%67raphql"


def test_normalize_path() -> None:
    assert normalize_path("/a/./b/../graphql") == "/a/graphql"
    assert normalize_path("/../../graphql") == "/graphql"
    assert normalize_path("/runs/") == "/runs/"


# Browser login ----------------------------------------------------------------------------------


def test_login_sets_a_cookie_the_ui_then_uses(client, gateway) -> None:
    viewer = token("viewer")
    login = client.get(f"{gateway}/login", params={"token": viewer, "next": "/runs"})
    assert login.status_code == 303 and login.headers["location"] == "/runs"
    cookie = login.headers["set-cookie"]
    assert f"{COOKIE_NAME}=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = client.get(f"{gateway}/runs", headers={"cookie": f"{COOKIE_NAME}={viewer}; theme=dark"})
    assert page.status_code == 200
    assert echoed(page)["headers"]["cookie"] == "theme=dark"  # our cookie is not forwarded


def test_login_refuses_bad_tokens_and_open_redirects(client, gateway) -> None:
    assert client.get(f"{gateway}/login", params={"token": "nope"}).status_code == 401
    login = client.post(
        f"{gateway}/login", data={"token": token("viewer"), "next": "//evil.example/"}, headers={"origin": gateway}
    )
    assert login.status_code == 303 and login.headers["location"] == "/"
    form = client.get(f"{gateway}/login")
    assert form.status_code == 200 and "<form" in form.text


def test_browser_without_token_gets_the_login_form_with_401(client, gateway) -> None:
    response = client.get(f"{gateway}/runs", headers={"accept": "text/html"})
    assert response.status_code == 401 and 'action="/login"' in response.text


# Proxying --------------------------------------------------------------------------------------


def test_large_bodies_stream_both_ways_and_headers_survive(client, gateway) -> None:
    operator = bearer(token("operator"))
    big = client.get(f"{gateway}/big", headers=operator)
    assert big.status_code == 200 and big.content == BIG_BODY
    posted = client.post(f"{gateway}/upload", content=BIG_BODY[:300_000], headers=operator)
    assert len(echoed(posted)["body"].encode("utf-8", "replace")) > 0 and echoed(posted)["method"] == "POST"
    cookies = client.get(f"{gateway}/cookies", headers=operator)
    assert sorted(cookies.headers.get_list("set-cookie"))[0].startswith("first=")
    assert len(cookies.headers.get_list("set-cookie")) == 2


def test_upstream_errors(client, start_gateway, fake_upstream) -> None:
    down = start_gateway("http://127.0.0.1:9")  # discard port: nothing listens
    response = client.get(f"{down}/runs", headers=bearer(token("viewer")))
    assert response.status_code == 502
    assert response.json()["error"] == "bad gateway" and "unreachable" in response.json()["detail"]
    health = client.get(f"{down}/healthz")
    assert health.status_code == 503 and health.json()["redis"] == "ok"
    up = start_gateway(fake_upstream)
    assert client.get(f"{up}/healthz").json() == {"status": "ok", "upstream": "ok", "redis": "ok"}
    assert client.get(f"{up}/fail", headers=bearer(token("viewer"))).status_code == 500  # passed through


def test_healthz_reports_redis_down(client, fake_upstream) -> None:
    from autoedit_dagster.gateway.app import Gateway
    from autoedit_dagster.gateway.settings import GatewaySettings

    from .conftest import ServerThread

    settings = GatewaySettings(upstream=fake_upstream, jwt_secret=SECRET, redis_url="redis://127.0.0.1:9/0")
    server = ServerThread(Gateway(settings))
    try:
        health = client.get(f"{server.url}/healthz")
        assert health.status_code == 503 and health.json()["redis"].startswith("unreachable")
        # Fails open: authentication still applies, the limit does not.
        assert client.get(f"{server.url}/runs", headers=bearer(token("viewer"))).status_code == 200
        assert client.get(f"{server.url}/runs").status_code == 401
    finally:
        server.stop()


# Rate limit ------------------------------------------------------------------------------------


def test_limit_from_a_small_setting(client, start_gateway, fake_upstream) -> None:
    gateway = start_gateway(fake_upstream, rate_limit=5)
    headers = bearer(token("viewer"))
    statuses = [client.get(f"{gateway}/runs", headers=headers).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = client.get(f"{gateway}/runs", headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"] == "rate limited"
    # Another client has its own budget; anonymous callers are counted by address.
    assert client.get(f"{gateway}/runs", headers=bearer(token("viewer"))).status_code == 200


def test_the_101st_request_in_a_minute_is_429_at_the_default(client, start_gateway, fake_upstream) -> None:
    gateway = start_gateway(fake_upstream)  # AUTOEDIT_RATE_LIMIT default: 100
    headers = bearer(token("operator", subject="busy-client"))
    statuses = [client.get(f"{gateway}/runs", headers=headers).status_code for _ in range(100)]
    assert statuses == [200] * 100
    last = client.get(f"{gateway}/runs", headers=headers)
    assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1
    assert last.headers["x-ratelimit-limit"] == "100"


def test_two_gateways_share_the_limit_through_redis(client, start_gateway, fake_upstream) -> None:
    prefix = f"autoedit-test-shared-{time.time_ns()}:"
    first = start_gateway(fake_upstream, key_prefix=prefix, rate_limit=4)
    second = start_gateway(fake_upstream, key_prefix=prefix, rate_limit=4)
    headers = bearer(token("viewer", subject="shared-client"))
    statuses = [client.get(f"{url}/runs", headers=headers).status_code for url in (first, second) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_unauthenticated_floods_are_limited_by_address(client, start_gateway, fake_upstream) -> None:
    gateway = start_gateway(fake_upstream, rate_limit=3)
    statuses = [client.get(f"{gateway}/runs").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert client.get(f"{gateway}/healthz").status_code == 200  # never limited


# Websocket -------------------------------------------------------------------------------------


def ws_url(gateway: str) -> str:
    return gateway.replace("http://", "ws://") + "/graphql"


def test_websocket_is_proxied_with_its_subprotocol(gateway) -> None:
    async def talk() -> tuple[str | None, dict, int]:
        async with connect(ws_url(gateway), subprotocols=["graphql-ws"], proxy=None,
                           additional_headers=bearer(token("viewer"))) as ws:  # fmt: skip
            start = {"id": "1", "type": "start", "payload": {"query": "subscription { runs { id } }"}}
            await ws.send(json.dumps(start))
            reply = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "close-please"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return ws.subprotocol, reply, closed.value.rcvd.code

    subprotocol, reply, code = asyncio.run(talk())
    assert subprotocol == "graphql-ws"
    assert reply["echo"]["payload"]["query"].startswith("subscription")
    assert code == 4000  # the upstream's close code reaches the client


def test_websocket_viewer_mutation_never_reaches_upstream(gateway) -> None:
    async def talk() -> dict:
        async with connect(ws_url(gateway), proxy=None, additional_headers=bearer(token("viewer"))) as ws:
            await ws.send(json.dumps({"id": "7", "type": "start", "payload": MUTATION}))
            return json.loads(await ws.recv())

    reply = asyncio.run(talk())
    assert reply["type"] == "error" and reply["id"] == "7" and "echo" not in reply


def test_websocket_without_token_is_refused_with_401(gateway) -> None:
    async def talk() -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(ws_url(gateway), proxy=None):
                pass
        return refused.value.response.status_code

    assert asyncio.run(talk()) == 401


def test_websocket_cookie_from_another_origin_is_refused(gateway) -> None:
    async def talk(origin: str) -> int:
        headers = {"cookie": f"{COOKIE_NAME}={token('operator')}", "origin": origin}
        try:
            async with connect(ws_url(gateway), proxy=None, additional_headers=headers) as ws:
                await ws.send(json.dumps({"type": "connection_init"}))
                await ws.recv()
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(talk("http://evil.example")) == 403
    assert asyncio.run(talk(gateway)) == 101


def test_websocket_closes_when_its_token_expires(gateway) -> None:
    async def talk() -> tuple[int, str]:
        async with connect(ws_url(gateway), proxy=None, additional_headers=bearer(token("viewer", ttl=1))) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=5)
            return closed.value.rcvd.code, closed.value.rcvd.reason

    assert asyncio.run(talk()) == (1008, "token expired")


def test_viewer_ws_refusal() -> None:
    judge = GraphQLJudge(GraphQLLimits())

    async def check() -> None:
        assert await viewer_ws_refusal(json.dumps({"type": "connection_init"}), judge) is None
        assert await viewer_ws_refusal(json.dumps({"type": "start", "id": "1", "payload": QUERY}), judge) is None
        refused = await viewer_ws_refusal(json.dumps({"type": "subscribe", "id": "2", "payload": MUTATION}), judge)
        assert refused["id"] == "2"
        assert (await viewer_ws_refusal("not json", judge))["type"] == "error"

    asyncio.run(check())


# Gateway metrics -------------------------------------------------------------------------------


def test_gateway_counts_its_requests(client, gateway) -> None:
    client.get(f"{gateway}/runs", headers=bearer(token("viewer")))
    client.get(f"{gateway}/runs")
    text = client.get(f"{gateway}/metrics", headers=bearer(token("viewer"))).text
    assert 'autoedit_gateway_requests_total{method="GET",role="viewer",route="ui",status="200"} 1.0' in text
    assert 'autoedit_gateway_auth_failures_total{reason="missing"} 1.0' in text
    assert "autoedit_gateway_request_duration_seconds_bucket" in text
    assert "autoedit_instance_up 0.0" in text  # no DAGSTER_HOME here


def test_metrics_can_be_operator_only(client, start_gateway, fake_upstream) -> None:
    gateway = start_gateway(fake_upstream, metrics_auth="operator")
    assert client.get(f"{gateway}/metrics").status_code == 401
    assert client.get(f"{gateway}/metrics", headers=bearer(token("viewer"))).status_code == 403
    assert client.get(f"{gateway}/metrics", headers=bearer(token("operator"))).status_code == 200


def test_logout_clears_the_cookie_even_when_expired(client, gateway) -> None:
    expired = jwt.encode({"role": "viewer", "exp": time.time() - 5}, SECRET)
    response = client.get(f"{gateway}/logout", headers={"cookie": f"{COOKIE_NAME}={expired}"})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert f'{COOKIE_NAME}=""' in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]


def test_settings_from_the_environment(tmp_path) -> None:
    from autoedit_dagster.gateway.settings import GatewaySettings
    from autoedit_dagster.gateway.tokens import ConfigurationError

    env = {"AUTOEDIT_JWT_SECRET": SECRET, "AUTOEDIT_REDIS_URL": "redis://cache:6379/3", "AUTOEDIT_RATE_LIMIT": "7",
           "AUTOEDIT_METRICS_AUTH": "operator", "DAGSTER_HOME": str(tmp_path)}  # fmt: skip
    settings = GatewaySettings.from_env("http://web:3000", env)
    assert (settings.rate_limit, settings.redis_url, settings.metrics_auth) == (7, "redis://cache:6379/3", "operator")
    assert settings.dagster_home == str(tmp_path) and settings.jwt_secret == SECRET
    assert GatewaySettings.from_env("http://web:3000", {"AUTOEDIT_JWT_SECRET": SECRET}).rate_limit == 100
    proxies = {**env, "AUTOEDIT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.2"}
    assert GatewaySettings.from_env("http://web:3000", proxies).trusted_proxies == ("10.0.0.0/8", "127.0.0.2")
    bad_values = (
        {"AUTOEDIT_RATE_LIMIT": "lots"}, {"AUTOEDIT_RATE_LIMIT": "-1"}, {"AUTOEDIT_METRICS_AUTH": "maybe"},
        {"AUTOEDIT_METRICS_AUTH": "none"}, {"AUTOEDIT_TRUSTED_PROXIES": "nginx"}, {"AUTOEDIT_JWT_SECRET": "short"},
    )  # fmt: skip
    for bad in bad_values:
        with pytest.raises(ConfigurationError):
            GatewaySettings.from_env("http://web:3000", {**env, **bad})
    with pytest.raises(ConfigurationError, match="upstream"):
        GatewaySettings.from_env("web:3000", env)
