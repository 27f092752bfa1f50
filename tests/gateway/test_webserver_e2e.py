"""`autoedit gateway` (a real process) in front of a real dagster-webserver on a temporary instance.

One finished run is in the instance before the gateway starts; through the gateway a viewer reads
it, is refused a mutation, an operator launches a run (it stays QUEUED: no daemon), the UI's
run-log subscription streams over the proxied websocket, and `/metrics` shows all of it.
"""

import asyncio
import json
import subprocess
import sys
import time

import dagster as dg
import httpx
from websockets.asyncio.client import connect

from .conftest import REPO, bearer, token
from .upstream_defs import run_video

LOCATION = "tests.gateway.upstream_defs"
RUNS = "query { runsOrError { ... on Runs { results { runId status jobName } } } }"
LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId status } } }
}"""
LOGS = """subscription Logs($runId: ID!) {
  pipelineRunLogs(runId: $runId) { __typename ... on PipelineRunLogsSubscriptionSuccess { messages { __typename } } }
}"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoedit_dagster.gateway.commands", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def graphql(client: httpx.Client, url: str, query: str, headers: dict, **variables) -> httpx.Response:
    return client.post(f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers)


def test_gateway_in_front_of_a_real_webserver(dagster_webserver, gateway_process) -> None:
    instance = dg.DagsterInstance.from_config(str(dagster_webserver.home))
    try:
        finished = run_video(instance, "clip-0000abcd")
    finally:
        instance.dispose()
    url, env, log_path = gateway_process
    minted = cli("token", "--role", "viewer", "--subject", "e2e-viewer", env=env)
    assert minted.returncode == 0, minted.stderr
    viewer = bearer(minted.stdout.strip())
    operator = bearer(token("operator", subject="e2e-operator"))

    with httpx.Client(timeout=30, trust_env=False) as client:
        assert graphql(client, url, RUNS, {}).status_code == 401
        runs = graphql(client, url, RUNS, viewer)
        assert runs.status_code == 200, runs.text
        results = runs.json()["data"]["runsOrError"]["results"]
        assert {"runId": finished.run_id, "status": "SUCCESS", "jobName": "video_job"} in results

        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": "video_job",
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "clip-0000abcd"}]},
        }
        refused = graphql(client, url, LAUNCH, viewer, params=params)
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        launched = graphql(client, url, LAUNCH, operator, params=params)
        assert launched.status_code == 200, launched.text
        run = launched.json()["data"]["launchRun"]["run"]
        assert run["status"] == "QUEUED"  # no daemon dequeues it

        ui = client.get(f"{url}/runs", headers={**viewer, "accept": "text/html"})
        assert ui.status_code == 200 and "<html" in ui.text.lower()

        async def subscribe() -> dict:
            ws_url = url.replace("http://", "ws://") + "/graphql"
            async with connect(ws_url, subprotocols=["graphql-ws"], additional_headers=viewer, proxy=None) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                start = {
                    "id": "1",
                    "type": "start",
                    "payload": {"query": LOGS, "variables": {"runId": finished.run_id}},
                }
                await ws.send(json.dumps(start))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
                    if message["type"] == "data":
                        return message["payload"]["data"]["pipelineRunLogs"]

        logs = asyncio.run(subscribe())
        assert logs["__typename"] == "PipelineRunLogsSubscriptionSuccess" and logs["messages"]

        # Each scrape reads history for at most its time budget (metrics.py) and catches up on the
        # next one, so on a loaded machine the first scrapes may not show the finished run yet.
        deadline = time.monotonic() + 60
        while True:
            metrics = client.get(f"{url}/metrics", headers=viewer)
            assert metrics.status_code == 200
            text = metrics.text
            if "autoedit_run_duration_seconds_count{" in text or time.monotonic() > deadline:
                break
            time.sleep(1)
        for line in (
            'autoedit_runs{status="SUCCESS"} 1.0',
            'autoedit_runs{status="QUEUED"} 1.0',
            "autoedit_run_queue_depth 1.0",
            "autoedit_videos_ingested 1.0",
            "autoedit_instance_up 1.0",
            'autoedit_run_duration_seconds_count{job="video_job",status="SUCCESS"} 1.0',
            'autoedit_renders_total{profile="tate"} 1.0',
            'autoedit_video_seconds_removed_total{profile="tate"} 4.5',
            "autoedit_video_seconds_processed_total 12.5",
            'autoedit_asset_check_failures_total{asset="tate/render",check="size_matches_profile",'
            'severity="ERROR"} 1.0',
            'autoedit_gateway_requests_total{method="POST",role="viewer",route="graphql",status="403"} 1.0',
            'autoedit_gateway_requests_total{method="GET",role="viewer",route="websocket",status="101"} 1.0',
        ):
            assert line in text, line
        assert 'autoedit_step_duration_seconds_count{status="SUCCESS",step="tate__render"} 1.0' in text

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, log_path.read_text()
    access = [fields for fields in lines if fields.get("path") == "/graphql" and fields.get("status") == 403]
    assert access and access[0]["subject"] == "e2e-viewer" and access[0]["level"] == "INFO"
    assert all({"time", "level", "message", "run_id", "video_id", "step"} <= fields.keys() for fields in lines)
