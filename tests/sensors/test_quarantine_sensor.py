"""Run-failure sensor: a failed video run leaves quarantine/<video_id>.json; the upload is untouched."""

import json
from datetime import datetime

import dagster as dg
import pytest

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.names import TAG_UPLOAD_KEY
from autoedit_dagster.partitions import video_id_for_upload, videos
from autoedit_dagster.resources import MediaStore
from autoedit_dagster.sensors import build_quarantine_sensor, default_run_requests, video_id_for_run

UPLOAD = "uploads/broken clip.mp4"


class UnsupportedMedia(Exception):
    """Stands in for the engine's typed error."""


@dg.asset(partitions_def=videos)
def source_video(context: dg.AssetExecutionContext) -> None:
    raise UnsupportedMedia(f"no video stream in {context.partition_key}")


@dg.asset
def nightly() -> None:
    raise RuntimeError("not about one video")


defs = dg.Definitions(
    assets=[source_video, nightly],
    jobs=[
        dg.define_asset_job("ingest", selection=[source_video]),
        dg.define_asset_job("nightly_job", selection=[nightly]),
    ],
)


def fail(job: str, instance: dg.DagsterInstance, **kwargs: object) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    assert not result.success
    return result


def evaluate(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, store: MediaStore) -> None:
    sensor = build_quarantine_sensor()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"store": store},
    ).for_run_failure()
    sensor(context)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", [video_id_for_upload(UPLOAD)])
    return instance


def test_failed_run_is_quarantined_with_its_reason(store: MediaStore, instance: dg.DagsterInstance) -> None:
    store.write_bytes(UPLOAD, b"not really a video")
    before = store.stat(UPLOAD)
    (request,) = default_run_requests(before, video_id_for_upload(UPLOAD))
    result = fail("ingest", instance, partition_key=request.partition_key, tags=request.tags)
    evaluate(result, instance, store)

    video_id = video_id_for_upload(UPLOAD)
    record = json.loads(store.read_bytes(f"quarantine/{video_id}.json"))
    assert record["video_id"] == video_id
    assert record["upload_key"] == UPLOAD
    assert record["upload_uri"] == store.uri(UPLOAD)
    assert record["run_id"] == result.run_id
    assert record["job_name"] == "ingest"
    assert record["reason"] == f"UnsupportedMedia: no video stream in {video_id}"
    assert record["steps"] == [
        {
            "step": "source_video",
            "error_class": "UnsupportedMedia",
            "message": f"no video stream in {video_id}",
        }
    ]
    assert datetime.fromisoformat(record["failed_at"]).tzinfo is not None
    # The upload is exactly where and what it was.
    assert store.stat(UPLOAD) == before
    assert store.read_bytes(UPLOAD) == b"not really a video"
    assert [obj.key for obj in store.list("uploads/")] == [UPLOAD]


def test_runs_launched_without_upload_tags_find_their_upload(
    local_store: MediaStore, instance: dg.DagsterInstance
) -> None:
    """A backfill or UI launch only carries Dagster's partition tag: the upload is looked up."""
    local_store.write_bytes("uploads/other.mp4", b"x")
    local_store.write_bytes(UPLOAD, b"x")
    result = fail("ingest", instance, partition_key=video_id_for_upload(UPLOAD))
    evaluate(result, instance, local_store)
    record = json.loads(local_store.read_bytes(f"quarantine/{video_id_for_upload(UPLOAD)}.json"))
    assert record["upload_key"] == UPLOAD


def test_runs_not_about_one_video_are_not_quarantined(local_store: MediaStore, instance: dg.DagsterInstance) -> None:
    evaluate(fail("nightly_job", instance), instance, local_store)
    assert list(local_store.list()) == []


def test_video_id_from_tags_is_validated() -> None:
    assert video_id_for_run({"dagster/partition": "clip-1234abcd"}) == "clip-1234abcd"
    assert video_id_for_run({"dagster/partition/videos": "clip-1234abcd", "dagster/partition": "a|b"}) == (
        "clip-1234abcd"
    )
    # A crafted partition key must not become a path outside quarantine/.
    assert video_id_for_run({"dagster/partition": "../../uploads/x-1234abcd"}) is None
    assert video_id_for_run({}) is None


def test_an_unusable_upload_key_is_quarantined_with_its_reason(
    local_store: MediaStore, instance: dg.DagsterInstance
) -> None:
    """A run tagged with `uploads//x.mp4` fails, and the quarantine sensor records it without raising."""
    key = "uploads//x.mp4"  # valid on S3; a local folder cannot hold it
    video_id = video_id_for_upload(key)
    instance.add_dynamic_partitions("videos", [video_id])
    job = build_definitions(local_store).resolve_job_def("video_job")
    result = job.execute_in_process(
        partition_key=video_id, instance=instance, tags={TAG_UPLOAD_KEY: key}, raise_on_error=False,
        asset_selection=[dg.AssetKey("source_video")],
    )  # fmt: skip
    assert not result.success
    evaluate(result, instance, local_store)
    record = json.loads(local_store.read_bytes(f"quarantine/{video_id}.json"))
    assert record["upload_key"] == key and record["upload_uri"] is None
    assert "unsafe storage key" in record["reason"]
