"""The GraphQL client against a recording fake server: what it sends, and how it words failures."""

from __future__ import annotations

import time

import pytest

from autoedit_dagster.remote.client import AutoEditClient
from autoedit_dagster.remote.errors import AuthError, NotFound, RateLimited, ServerError, Unreachable, UsageError
from autoedit_dagster.remote.records import Endpoint
from tests.remote.conftest import VIDEO_ID, FakeDagster, free_port, materialized_node, video_assets_answer


@pytest.mark.parametrize(
    ("url", "base", "host", "port", "https", "prefix"),
    [
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000", "127.0.0.1", 3000, False, ""),
        ("https://dagster.example.com/", "https://dagster.example.com", "dagster.example.com", None, True, ""),
        ("http://gw:8080/dagster/graphql", "http://gw:8080/dagster", "gw", 8080, False, "/dagster"),
        ("http://[::1]:3000", "http://[::1]:3000", "[::1]", 3000, False, ""),
    ],
)
def test_endpoint_parse(url: str, base: str, host: str, port: int | None, https: bool, prefix: str) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.base_url, endpoint.hostname, endpoint.port, endpoint.use_https, endpoint.path_prefix) == (
        base, host, port, https, prefix,
    )  # fmt: skip
    assert endpoint.graphql_url == f"{base}/graphql"


@pytest.mark.parametrize("url", ["", "localhost:3000", "ftp://host", "http://", "http://host:99999", "http://h/?q=1"])
def test_bad_urls_are_user_errors(url: str) -> None:
    with pytest.raises(UsageError, match="bad server URL"):
        Endpoint.parse(url)


def test_token_is_sent_on_plain_and_dagster_graphql_requests(fake: FakeDagster) -> None:
    with AutoEditClient(fake.url, token="tok-123") as client:
        assert client.ping() == "1.13.27"  # plain GraphQL over httpx
        run_id = client.launch_run("yoko_job", VIDEO_ID, {"autoedit/profile": "yoko"})  # DagsterGraphQLClient
        status = client.run_status(run_id)  # plain GraphQL: status and steps in one request
    assert (run_id, status) == ("run-2", "SUCCESS")
    # ping, then the client's job lookup + launch, then the status query
    assert len(fake.requests) == 4
    assert {r.path for r in fake.requests} == {"/graphql"}
    assert [r.headers.get("authorization") for r in fake.requests] == ["Bearer tok-123"] * 4
    (launch,) = fake.find("launchPipelineExecution")
    params = launch.body["variables"]["executionParams"]
    assert params["selector"]["pipelineName"] == "yoko_job"
    tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
    assert tags == {"dagster/partition": VIDEO_ID, "autoedit/video_id": VIDEO_ID, "autoedit/profile": "yoko"}


def test_no_token_no_authorization_header(fake: FakeDagster) -> None:
    with AutoEditClient(fake.url) as client:
        client.ping()
        client.run_status("run-2")
    assert all("authorization" not in r.headers for r in fake.requests)


def _plain(client: AutoEditClient) -> object:
    return client.ping()


def _dagster(client: AutoEditClient) -> object:
    return client.launch_run("video_job", VIDEO_ID)


@pytest.mark.parametrize("call", [_plain, _dagster], ids=["plain", "dagster-graphql"])
@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "exit_code", "fragment"),
    [
        (401, {}, b'{"detail": "missing bearer token"}', AuthError, 2, "401 Unauthorized"),
        (403, {}, b'{"detail": "viewer tokens may not run mutations"}', AuthError, 2, "403 Forbidden"),
        # longer than the client waits out: the error at once
        (429, {"Retry-After": "120"}, b'{"detail": "rate limit"}', RateLimited, 1, "429 Too Many Requests"),
        (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>", ServerError, 1, "502"),
        (404, {"Content-Type": "text/plain"}, b"not here", UsageError, 2, "404"),
    ],
)
def test_http_errors_become_one_line(
    fake: FakeDagster, call, status, headers, body, error, exit_code, fragment
) -> None:
    fake.status, fake.reply_headers, fake.reply_body = status, headers, body
    with AutoEditClient(fake.url, token="t") as client, pytest.raises(error) as caught:
        call(client)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 400
    assert caught.value.exit_code == exit_code


def test_retry_after_is_reported_on_plain_requests(fake: FakeDagster) -> None:
    fake.status, fake.reply_headers, fake.reply_body = 429, {"Retry-After": "120"}, b"{}"
    with AutoEditClient(fake.url) as client, pytest.raises(RateLimited, match="retry after 120 s") as caught:
        client.ping()
    assert caught.value.retry_after == 120.0
    assert len(fake.requests) == 1  # not waited out: over RETRY_AFTER_MAX


def test_a_429_is_waited_out_once_and_said(fake: FakeDagster, capsys: pytest.CaptureFixture[str]) -> None:
    """A real server answers 429 with Retry-After: 1, then the answer: one wait, said on stderr, one retry."""
    limited = (429, {"Retry-After": "1"}, b'{"detail": "rate limit"}')
    fake.replies_first = [limited]
    with AutoEditClient(fake.url) as client:
        started = time.monotonic()
        assert client.ping() == "1.13.27"
        waited = time.monotonic() - started
    assert len(fake.requests) == 2 and 1.0 <= waited < 5.0
    err = capsys.readouterr().err
    assert err == f"autoedit: {fake.url} is rate limiting this client (429); retrying once in 1 s\n"

    fake.requests.clear()
    fake.replies_first = [limited, limited]  # still limited after the wait: the error, no third request
    with AutoEditClient(fake.url) as client, pytest.raises(RateLimited, match="429"):
        client.ping()
    assert len(fake.requests) == 2


@pytest.mark.parametrize("call", [_plain, _dagster], ids=["plain", "dagster-graphql"])
def test_graphql_errors_become_one_line(fake: FakeDagster, call) -> None:
    fake.status = 200
    fake.reply_body = b'{"errors": [{"message": "Cannot query field \\"nope\\"\\non type Query"}]}'
    with AutoEditClient(fake.url) as client, pytest.raises(ServerError, match="GraphQL error") as caught:
        call(client)
    assert "\n" not in str(caught.value)


def test_server_500_with_python_error_is_reported(fake: FakeDagster) -> None:
    """dagster-webserver answers 500 with a GraphQL body when a resolver raised (e.g. storage gone)."""
    fake.status = 500
    fake.reply_body = b'{"data": {"partitionBackfillOrError": {"__typename": "PythonError", "message": "sqlite3.OperationalError: unable to open database file\\n"}}}'  # noqa: E501
    with AutoEditClient(fake.url) as client, pytest.raises(ServerError, match="unable to open database file"):
        client.backfill("bf1")


def test_typed_errors_in_answers(fake: FakeDagster) -> None:
    fake.answers["AutoeditBackfillStatus"] = {
        "partitionBackfillOrError": {"__typename": "BackfillNotFoundError", "message": "Backfill nope not found"}
    }
    fake.answers["AutoeditRunSteps"] = {
        "runOrError": {"__typename": "RunNotFoundError", "message": "Run nope could not be found."}
    }
    with AutoEditClient(fake.url) as client:
        with pytest.raises(NotFound, match="Backfill nope not found"):
            client.backfill("nope")
        with pytest.raises(NotFound, match="could not be found"):
            client.run_status("nope")


@pytest.mark.parametrize("call", [_plain, _dagster], ids=["plain", "dagster-graphql"])
def test_unreachable_server(call) -> None:
    with AutoEditClient(f"http://127.0.0.1:{free_port()}", timeout=5) as client, pytest.raises(Unreachable) as caught:
        call(client)
    assert caught.value.exit_code == 1
    assert "cannot reach http://127.0.0.1:" in str(caught.value)


def test_check_results_are_read_from_the_run_that_made_the_render(fake: FakeDagster) -> None:
    """The checks are unpartitioned: a video's results are the evaluations in the log of the run
    that materialized its render (whatever its age); a check that run planned and never evaluated
    is said to be skipped (the run succeeded)."""
    entries = {"video": "file:///s/renders/v/tate/final.mp4", "uri": "file:///s/work/v/tate/render.json"}
    checks = ("size_matches_profile", "loudness_on_target")
    fake.answers["AutoeditVideoAssets"] = video_assets_answer(
        [materialized_node(["tate", "render"], "tate", "run-1", entries, checks)]
    )
    asked: list[str] = []

    def executions(variables: dict, query: str) -> dict:
        asked.append(query)

        def evaluation(path: list[str], check: str, passed: bool, description: str) -> dict:
            return {"evaluation": {"assetKey": {"path": path}, "checkName": check, "success": passed,
                                   "severity": "ERROR", "description": description}}  # fmt: skip

        planned = {"assetKey": {"path": ["tate", "render"]}, "checkName": "loudness_on_target"}
        events = [{}, planned, evaluation(["square", "render"], "size_matches_profile", False, "other asset"),
                  evaluation(["tate", "render"], "size_matches_profile", True, "1080x1920"), {}]  # fmt: skip
        return {"l0": {"events": events}}

    fake.answers["AutoeditChecks"] = executions
    with AutoEditClient(fake.url) as client:
        (video,) = client.video_status([VIDEO_ID])
    assert video["assets"]["tate/render"]["state"] == "MATERIALIZED"
    assert 'logsForRun(runId: "run-1")' in asked[0] and "assetCheckExecutions" not in asked[0]
    assert video["checks"] == {
        "tate/render:size_matches_profile": {
            "status": "SUCCEEDED", "passed": True, "severity": "ERROR", "description": "1080x1920", "run_id": "run-1",
        },
        "tate/render:loudness_on_target": {
            "status": "SKIPPED", "passed": None, "severity": None, "description": None, "run_id": "run-1",
        },
    }  # fmt: skip
    assert video["outputs"] == {"tate": {"video": "file:///s/renders/v/tate/final.mp4"}}  # IO manager `uri` left out
    assert video["latest_run"]["run_id"] == "run-1"
