"""render.succeeded reaches a real receiver: signed, retried after two failures, once per key, across restarts.

Each delivery tick runs in a process of its own (`testsupport.webhook_tick`), so whatever a later
tick knows was read back from the store and the instance: a daemon restarted between attempts.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client import generate_latest

from autoedit_dagster.gateway.metrics import build_registry
from autoedit_dagster.names import REPORT_NAME, TAG_VIDEO_ID, render_prefix
from autoedit_dagster.resources import MediaStore, S3MediaStore
from autoedit_dagster.sensors import build_render_succeeded_sensor
from autoedit_dagster.webhooks.outbox import DONE_PREFIX, PENDING_PREFIX, Delivery, enqueue
from autoedit_dagster.webhooks.settings import WebhookResource
from testsupport.webhook_receiver import WebhookReceiver, serve

SECRET = "webhook-test-secret-" + "0123456789abcdef" * 2
VIDEO = "talk-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


@dg.asset(key=["tate", "edit_report"], partitions_def=dg.DynamicPartitionsDefinition(name="videos"))
def edit_report(context: dg.AssetExecutionContext, store: MediaStore) -> None:
    report = {"upload_key": "uploads/talk.mp4", "source_duration": 10.0, "output_duration": 7.5, "seconds_removed": 2.5}
    store.write_bytes(render_prefix(context.partition_key, "tate") + REPORT_NAME, json.dumps(report).encode())
    store.write_bytes(render_prefix(context.partition_key, "tate") + "final.mp4", b"not really a video")


@dg.asset_check(asset=edit_report, name="duration_matches_timeline")
def duration_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def storage_env(store: MediaStore) -> dict[str, str]:
    if isinstance(store, S3MediaStore):
        return {"AUTOEDIT_STORAGE": f"s3://{store.bucket}/{store.prefix}", "AWS_ENDPOINT_URL": str(store.endpoint_url)}
    return {"AUTOEDIT_STORAGE": str(store.root)}  # type: ignore[attr-defined]


def tick(instance: dg.DagsterInstance, store: MediaStore, url: str) -> str:
    """One delivery tick in a fresh process (a daemon started, ticking once, and stopped)."""
    env = {
        **os.environ,
        **storage_env(store),
        "DAGSTER_HOME": str(instance.root_directory),
        "AUTOEDIT_WEBHOOK_URLS": url,
        "AUTOEDIT_WEBHOOK_SECRET": SECRET,
        "AUTOEDIT_WEBHOOK_BACKOFF_S": "0.5",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "testsupport.webhook_tick"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr
    return done.stdout


def status_context(
    sensor: dg.SensorDefinition,
    result: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance,
    store: MediaStore,
    webhooks: WebhookResource,
) -> dg.RunStatusSensorContext:
    return dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_success_event() if result.success else result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"store": store, "webhooks": webhooks},
    )


def succeed(instance: dg.DagsterInstance, store: MediaStore, webhooks: WebhookResource) -> None:
    """A real successful run, then the run-status sensor on it."""
    instance.add_dynamic_partitions("videos", [VIDEO])
    defs = dg.Definitions(
        assets=[edit_report],
        asset_checks=[duration_check],
        jobs=[dg.define_asset_job("video_job")],
        resources={"store": store},
    )
    job = defs.resolve_job_def("video_job")
    result = job.execute_in_process(instance=instance, partition_key=VIDEO, tags={TAG_VIDEO_ID: VIDEO})
    assert result.success
    sensor = build_render_succeeded_sensor()
    context = status_context(sensor, result, instance, store, webhooks)
    sensor(context)
    sensor(context)  # a tick repeated after a crash queues nothing new


def test_render_succeeded_is_delivered_once_after_two_failures_across_restarts(
    instance: dg.DagsterInstance, store: MediaStore
) -> None:
    receiver = WebhookReceiver(SECRET.encode(), fail_first=2)
    server, url = serve(receiver)
    try:
        webhooks = WebhookResource(urls=[url], secret=SECRET, backoff_base_s=0.5)
        succeed(instance, store, webhooks)
        assert [o.key for o in store.list(PENDING_PREFIX)] and not list(store.list(DONE_PREFIX))

        ticks = []
        for _ in range(8):
            ticks.append(tick(instance, store, url))
            if receiver.accepted:
                break
            time.sleep(0.6)  # past the backoff: 0.5 s, then 1 s
            if len(receiver.seen) == 2:
                time.sleep(0.6)
        time.sleep(0.6)
        ticks.append(tick(instance, store, url))  # nothing left to send
    finally:
        server.shutdown()

    assert [r.status for r in receiver.seen] == [500, 500, 200], ticks
    assert all(r.signed for r in receiver.seen)
    assert [r.attempt for r in receiver.seen] == ["1", "2", "3"]
    assert len({r.key for r in receiver.seen}) == 1 and receiver.duplicates == 0
    (event,) = receiver.accepted.values()
    assert event["type"] == "render.succeeded"
    data = event["data"]
    assert (data["video_id"], data["profile"], data["kept_s"], data["removed_s"]) == (VIDEO, "tate", 7.5, 2.5)
    assert data["checks"] == {"duration_matches_timeline": {"passed": True, "severity": "ERROR"}}
    if isinstance(store, S3MediaStore):
        assert "Signature=" in data["render_url"] and data["render_url"].startswith("http")

    assert not list(store.list(PENDING_PREFIX))
    (done,) = [Delivery.model_validate_json(store.read_bytes(o.key)) for o in store.list(DONE_PREFIX)]
    assert done.state == "delivered" and [a.outcome for a in done.attempts] == ["retrying", "retrying", "delivered"]
    assert [a.status_code for a in done.attempts] == [500, 500, 200]

    # The same event queued again after delivery is not sent again.
    settings = WebhookResource(urls=[url], secret=SECRET).settings()
    body = json.loads(done.body)
    assert enqueue(store, settings, "render.succeeded", (body["data"]["run_id"], VIDEO, "tate"), body["data"]) == []

    registry, _, _ = build_registry(instance)
    text = generate_latest(registry).decode()
    assert 'autoedit_webhook_deliveries_total{outcome="retrying"} 2.0' in text
    assert 'autoedit_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    observed = instance.fetch_observations(dg.AssetKey("webhook_deliveries"), limit=10).records
    assert len(observed) == 3


def test_a_dead_subscriber_is_given_up_after_the_last_attempt(local_store: MediaStore) -> None:
    from autoedit_dagster.webhooks.delivery import deliver_due

    settings = WebhookResource(urls=["http://127.0.0.1:9/nothing-listens"], secret=SECRET, max_attempts=3).settings()
    (did,) = enqueue(local_store, settings, "render.failed", ("run-1",), {"video_id": VIDEO, "reason": "x"})
    now = time.time()
    outcomes = [a.outcome for t in (0, 100, 200, 300) for a in deliver_due(local_store, settings, now=now + t)]
    assert outcomes == ["retrying", "retrying", "gave_up"]
    record = Delivery.model_validate_json(local_store.read_bytes(f"{DONE_PREFIX}{did}.json"))
    assert record.state == "gave_up" and all(a.error == "ConnectError" for a in record.attempts)


class UnsupportedMedia(Exception):
    """Stands in for the engine's typed error."""


@dg.asset(key="source_video", partitions_def=dg.DynamicPartitionsDefinition(name="videos"))
def broken_source() -> None:
    raise UnsupportedMedia("no video stream (audio-only files are not edited)")


def test_a_failed_run_sends_render_failed_and_upload_quarantined_with_the_reason(
    instance: dg.DagsterInstance, local_store: MediaStore
) -> None:
    from autoedit_dagster.sensors import build_run_failed_sensor
    from autoedit_dagster.webhooks.delivery import deliver_due

    instance.add_dynamic_partitions("videos", [VIDEO])
    defs = dg.Definitions(assets=[broken_source], jobs=[dg.define_asset_job("video_job")])
    result = defs.resolve_job_def("video_job").execute_in_process(
        instance=instance, partition_key=VIDEO, tags={TAG_VIDEO_ID: VIDEO}, raise_on_error=False
    )
    receiver = WebhookReceiver(SECRET.encode())
    server, url = serve(receiver)
    try:
        webhooks = WebhookResource(urls=[url], secret=SECRET)
        sensor = build_run_failed_sensor()
        context = status_context(sensor, result, instance, local_store, webhooks).for_run_failure()
        sensor(context)
        made = deliver_due(local_store, webhooks.settings())
    finally:
        server.shutdown()
    assert [a.outcome for a in made] == ["delivered", "delivered"]
    by_type = {event["type"]: event["data"] for event in receiver.accepted.values()}
    reason = "UnsupportedMedia: no video stream (audio-only files are not edited)"
    assert by_type["render.failed"]["reason"] == reason
    assert by_type["upload.quarantined"]["reason"] == reason
    assert by_type["upload.quarantined"]["quarantine_key"] == f"quarantine/{VIDEO}.json"


def test_a_subscriber_removed_from_the_settings_gets_nothing_more(local_store: MediaStore) -> None:
    from autoedit_dagster.webhooks.delivery import deliver_due

    receiver = WebhookReceiver(SECRET.encode())
    server, url = serve(receiver)
    try:
        before = WebhookResource(urls=[url], secret=SECRET).settings()
        enqueue(local_store, before, "render.failed", ("run-2",), {"video_id": VIDEO})
        after = WebhookResource(urls=["https://other.example/hook"], secret=SECRET).settings()
        (attempt,) = deliver_due(local_store, after)
    finally:
        server.shutdown()
    assert (attempt.outcome, attempt.error) == ("gave_up", "no longer subscribed")
    assert receiver.seen == []
