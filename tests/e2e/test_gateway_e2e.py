"""End to end through the gateway: `autoedit submit --wait` with an operator token, the upload sensor's
run succeeds, `status` shows it, `fetch` returns a 1080x1920 MP4; roles, missing tokens and the
rate limit hold in front of the real webserver; `/metrics` shows the run.

Malformed, expired, wrongly signed and exp-less tokens are each refused with 401 and their reason
in `tests/gateway/test_gateway.py::test_bad_tokens_are_401_each_with_its_reason` (same gateway code,
fake upstream), and the limit shared by two replicas through Redis in
`test_two_gateways_share_the_limit_through_redis`: not repeated here.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.gateway.tokens import mint_token
from autoedit_dagster.partitions import video_id_for_upload
from testsupport.servers import JWT_SECRET

from .conftest import Stack

pytestmark = pytest.mark.timeout(600)

WAIT = "300"  # seconds the CLI may wait for the run on a loaded machine; an idle one needs far less
LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename }
}"""
RUNS = "query Runs { runsOrError { ... on Runs { results { runId status } } } }"


def token(role: str, subject: str) -> str:
    return mint_token(JWT_SECRET, role, subject=subject, ttl=900)


@pytest.fixture(scope="module")
def submitted(stack: Stack, clip: Path) -> dict:
    """`autoedit submit --wait` through the gateway with an operator token: the CLI's JSON answer."""
    started = time.monotonic()
    done = stack.autoedit("submit", str(clip), "--wait", "--json", "--timeout", WAIT,
                          "--url", stack.gateway.url, "--token", token("operator", "e2e-operator"))  # fmt: skip
    assert done.returncode == 0, done.stderr + stack.servers.tail()
    print(f"\nsubmit --wait through the gateway: {time.monotonic() - started:.1f} s")
    return json.loads(done.stdout)


def test_submit_status_fetch_through_the_gateway(stack: Stack, submitted: dict, tmp_path: Path) -> None:
    video_id = video_id_for_upload("uploads/gateway-talk.mp4")
    assert (submitted["video_id"], submitted["job"], submitted["status"]) == (video_id, "video_job", "SUCCESS")
    operator = ["--url", stack.gateway.url, "--token", token("operator", "e2e-operator")]

    status = stack.autoedit("status", "--json", *operator)
    assert status.returncode == 0, status.stderr
    (video,) = json.loads(status.stdout)
    assert video["video_id"] == video_id
    assert (video["latest_run"]["run_id"], video["latest_run"]["status"]) == (submitted["run_id"], "SUCCESS")
    assert video["assets"]["tate/render"]["state"] == "MATERIALIZED"
    assert video["checks"]["tate/render:size_matches_profile"]["passed"] is True

    out = tmp_path / "vertical.mp4"
    fetched = stack.autoedit("fetch", video_id, "-o", str(out), *operator)
    assert fetched.returncode == 0, fetched.stderr
    info = probe(out)
    assert (info.video_codec, info.width, info.height) == ("h264", 1080, 1920)
    assert info.has_audio
    assert "mp4" in info.container and info.duration > 1.0


def test_viewer_reads_but_may_not_mutate_and_no_token_is_401(stack: Stack) -> None:
    url = f"{stack.gateway.url}/graphql"
    viewer = {"Authorization": f"Bearer {token('viewer', 'e2e-viewer')}"}
    params = {"selector": {"repositoryLocationName": "autoedit_dagster.definitions:defs",
                           "repositoryName": "__repository__", "jobName": "catalog_job"}}  # fmt: skip
    with httpx.Client(timeout=60, trust_env=False) as client:
        assert client.post(url, json={"query": RUNS}).status_code == 401
        assert client.post(url, json={"query": RUNS}, headers=viewer).status_code == 200
        refused = client.post(url, json={"query": LAUNCH, "variables": {"params": params}}, headers=viewer)
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]

    # The CLI says so in one line and exits 2 (a user error), never with a traceback.
    backfill = stack.autoedit("backfill", "--all", "--url", stack.gateway.url, "--token", token("viewer", "e2e-cli"))
    assert backfill.returncode == 2 and "403 Forbidden" in backfill.stderr, backfill.stderr
    assert len(backfill.stderr.strip().splitlines()) == 1 and backfill.stdout == ""
    anonymous = stack.autoedit("status", "--url", stack.gateway.url)
    assert anonymous.returncode == 2 and "401 Unauthorized" in anonymous.stderr, anonymous.stderr


def test_the_101st_request_in_a_minute_is_429(stack: Stack) -> None:
    """The gateway's default limit (AUTOEDIT_RATE_LIMIT unset: 100 a minute) on a subject of its own."""
    headers = {"Authorization": f"Bearer {token('viewer', 'e2e-flood')}"}
    with httpx.Client(timeout=60, trust_env=False) as client:
        started = time.monotonic()
        statuses = [client.get(f"{stack.gateway.url}/server_info", headers=headers).status_code for _ in range(100)]
        assert statuses == [200] * 100
        over = client.get(f"{stack.gateway.url}/server_info", headers=headers)
        assert time.monotonic() - started < 60, "the 101 requests did not fit in one window"
    assert over.status_code == 429, over.text
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert over.headers["X-RateLimit-Limit"] == "100"


def test_metrics_show_the_run(stack: Stack, submitted: dict) -> None:
    # /metrics is never public: what Prometheus sends is a token with the `metrics` scope.
    scrape = {"Authorization": f"Bearer {mint_token(JWT_SECRET, None, subject='e2e-prometheus', scopes=('metrics',))}"}
    text = httpx.get(f"{stack.gateway.url}/metrics", headers=scrape, timeout=60, trust_env=False).text
    # The daemon's temp-file sweep runs a `sweep_job` of its own at start: count the edit by its job.
    assert re.search(r'^autoedit_runs\{status="SUCCESS"\} [1-9]', text, re.M)
    # At most catalog_sensor's refresh after the edit may be waiting for its turn.
    assert re.search(r"^autoedit_run_queue_depth [01]\.0$", text, re.M)
    for line in (
        "autoedit_videos_ingested 1.0",
        "autoedit_instance_up 1.0",
        'autoedit_run_duration_seconds_count{job="video_job",status="SUCCESS"} 1.0',
        'autoedit_renders_total{profile="tate"} 1.0',
    ):
        assert line in text, line
    # The CLI's own traffic, counted under the operator's role.
    assert re.search(r'autoedit_gateway_requests_total\{method="POST",role="operator",route="graphql",'
                     r'status="200"\} [1-9]', text)  # fmt: skip
