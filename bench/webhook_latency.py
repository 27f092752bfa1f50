"""`python -m bench.webhook_latency`: run success -> the subscriber's 200 via the real daemon; writes bench/WEBHOOKS.md.

A temporary instance and storage (deploy/dagster.local.yaml) with one uploaded 2 s lavfi clip;
dagster-webserver and dagster-daemon run the code location with `AUTOEDIT_WEBHOOK_URLS` naming a
receiver on loopback (`testsupport/webhook_receiver.py`: it verifies every signature and answers
200). `video_job` is launched for the clip's partition BENCH_WEBHOOK_RUNS times (default 20)
through GraphQL; for each successful run the latency is the receiver's arrival time of its
`render.succeeded` minus the run's RUN_SUCCESS event time: the run-status sensor's tick, the
delivery sensor's tick and the POST. Both sensors tick every 5 s at best, so the figures are
bounded below by the daemon's sensor loop, not by the sending.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx

from autoedit_dagster.partitions import video_id_for_upload
from testsupport.servers import Instance, Servers, make_clip
from testsupport.webhook_receiver import WebhookReceiver, serve

HERE = Path(__file__).resolve().parent
REPORT = HERE / "WEBHOOKS.md"
RUNS = int(os.environ.get("BENCH_WEBHOOK_RUNS", "20"))
SECRET = "bench-webhook-secret-" + "0123456789abcdef" * 2
UPLOAD = "uploads/webhook-bench.mp4"
LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""


def launch(webserver: str, location: str, video_id: str) -> str:
    params = {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                     "jobName": "video_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": video_id},
                                       {"key": "autoedit/video_id", "value": video_id}]},
    }  # fmt: skip
    reply = httpx.post(f"{webserver}/graphql", json={"query": LAUNCH, "variables": {"params": params}}, timeout=60)
    result = reply.json()["data"]["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch failed: {result}")
    return str(result["run"]["runId"])


def location_name(webserver: str) -> str:
    query = "query { repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
    nodes = httpx.post(f"{webserver}/graphql", json={"query": query}, timeout=60).json()["data"]["repositoriesOrError"]
    return str(nodes["nodes"][0]["location"]["name"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    receiver = WebhookReceiver(SECRET.encode())
    server, url = serve(receiver)
    hooks = {
        "AUTOEDIT_WEBHOOK_URLS": url,
        "AUTOEDIT_WEBHOOK_SECRET": SECRET,
        "AUTOEDIT_WEBHOOK_EVENTS": "render.succeeded",
    }
    with tempfile.TemporaryDirectory() as tmp:
        instance = Instance.create(Path(tmp))
        clip = instance.storage / UPLOAD
        clip.parent.mkdir(parents=True)
        make_clip(clip)
        video_id = video_id_for_upload(UPLOAD)
        with instance.open() as dagster_instance:
            dagster_instance.add_dynamic_partitions("videos", [video_id])
        with Servers(instance) as servers:
            webserver = servers.start_webserver(hooks)
            servers.wait_webserver(webserver)
            servers.start_daemon(hooks)
            location = location_name(webserver.url)
            run_ids = [launch(webserver.url, location, video_id) for _ in range(RUNS)]
            deadline = time.monotonic() + 120 * RUNS
            while time.monotonic() < deadline:
                with instance.open() as dagster_instance:
                    runs = dagster_instance.get_runs(dg.RunsFilter(run_ids=run_ids))
                    done = [r for r in runs if r.is_finished]
                got = {event["data"]["run_id"] for event in receiver.accepted.values()}
                succeeded = {r.run_id for r in done if r.is_success}
                if len(done) == RUNS and succeeded <= got:
                    break
                time.sleep(1)
            with instance.open() as dagster_instance:
                finished_at = {}
                for run_id in run_ids:
                    records = dagster_instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
                    if records.records:
                        finished_at[run_id] = records.records[0].timestamp
    server.shutdown()
    arrived = {}
    for received in receiver.seen:
        event = next((e for k, e in receiver.accepted.items() if k == received.key), None)
        if event is not None and received.status == 200:
            arrived.setdefault(event["data"]["run_id"], received.at)
    latencies = [arrived[r] - finished_at[r] for r in finished_at if r in arrived]
    # The upload sensor also runs the clip once on its own: its event arrives, but is not timed.
    others = len(set(arrived) - set(run_ids))
    lines = [
        "# Webhook delivery latency",
        "",
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} by `python -m bench.webhook_latency` on "
        f"{platform.node()} ({os.cpu_count()} CPUs, shared with other work): the real daemon and webserver on a "
        "temporary SQLite instance, `video_job` on a 2 s clip, a loopback receiver verifying signatures.",
        "",
        f"- runs launched: {RUNS}; succeeded: {len(finished_at)}; their `render.succeeded` received: "
        f"{len(set(arrived) & set(run_ids))} (and {others} for the upload sensor's own run of the clip); "
        f"signatures refused: {sum(not r.signed for r in receiver.seen)}; duplicates: {receiver.duplicates}",
    ]
    if latencies:
        lines += [
            f"- run success -> receiver's 200: p50 {statistics.median(latencies):.1f} s, "
            f"p95 {percentile(latencies, 0.95):.1f} s, min {min(latencies):.1f} s, max {max(latencies):.1f} s",
            "",
            "Both sensors (`webhook_render_succeeded_sensor`, `webhook_delivery_sensor`) tick every 5 s at best; the",
            "latency is their two ticks (and the daemon's loop on a loaded machine), not the POST.",
        ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
