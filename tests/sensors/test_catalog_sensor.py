"""`catalog_sensor`: one catalog refresh for the video runs finished since the last, never twice, a
failed run counted once its quarantine record is there (or after the grace period)."""

import json
import time

import dagster as dg
import pytest

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.names import TAG_VIDEO_ID, quarantine_key
from autoedit_dagster.resources import LocalMediaStore, MediaStore
from autoedit_dagster.sensors.catalog_sensor import QUARANTINE_GRACE_S, RANGE_START_TAG, catalog_refresh

VIDEO = "talk-0123456789abcdef"


@dg.op
def edit(context: dg.OpExecutionContext) -> None:
    if context.run.tags.get("fail"):
        raise RuntimeError("the engine refused the file")


edit_job = dg.GraphDefinition("video_job", node_defs=[edit]).to_job()


def finish(
    instance: dg.DagsterInstance, *, fail: bool = False, video: str | None = VIDEO, extra: dict | None = None
) -> str:
    tags = {**({TAG_VIDEO_ID: video} if video else {}), **({"fail": "1"} if fail else {}), **(extra or {})}
    result = edit_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert result.success is not fail
    return result.run_id


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_finished_video_runs_request_one_refresh(instance: dg.DagsterInstance, local_store: MediaStore) -> None:
    nothing, cursor = catalog_refresh(instance, local_store, None, time.time())
    assert isinstance(nothing, dg.SkipReason) and cursor is None

    finish(instance, video=None)  # not about a video: passed over
    first = finish(instance)
    second = finish(instance)
    request, cursor = catalog_refresh(instance, local_store, None, time.time())
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"catalog-after-{second}" and first != second  # one run for both
    again, same = catalog_refresh(instance, local_store, cursor, time.time())
    assert isinstance(again, dg.SkipReason) and same == cursor

    # A backfill's run names its videos by a partition range, not one video.
    ranged = finish(instance, video=None, extra={RANGE_START_TAG: VIDEO, "dagster/asset_partition_range_end": VIDEO})
    backfilled, cursor = catalog_refresh(instance, local_store, cursor, time.time())
    assert isinstance(backfilled, dg.RunRequest) and backfilled.run_key == f"catalog-after-{ranged}"

    # A catalog run still queued reads the store when it starts: nothing more is requested.
    instance.add_run(dg.DagsterRun(job_name="catalog_job", run_id="c" * 36, status=dg.DagsterRunStatus.NOT_STARTED))
    finish(instance)
    queued, later = catalog_refresh(instance, local_store, cursor, time.time())
    assert isinstance(queued, dg.SkipReason) and "queued" in str(queued.skip_message)
    assert later != cursor


def test_a_failed_run_waits_for_its_quarantine_record(instance: dg.DagsterInstance, local_store: MediaStore) -> None:
    failed = finish(instance, fail=True)
    waiting, cursor = catalog_refresh(instance, local_store, None, time.time())
    assert isinstance(waiting, dg.SkipReason) and cursor is None  # the cursor stays before the failed run

    late, _ = catalog_refresh(instance, local_store, None, time.time() + QUARANTINE_GRACE_S + 1)
    assert isinstance(late, dg.RunRequest)  # no record after the grace period: refreshed anyway

    local_store.write_bytes(quarantine_key(VIDEO), json.dumps({"video_id": VIDEO}).encode())
    request, cursor = catalog_refresh(instance, local_store, None, time.time())
    assert isinstance(request, dg.RunRequest) and request.run_key == f"catalog-after-{failed}"
    assert cursor is not None


def test_the_sensor_in_the_code_location(instance: dg.DagsterInstance, local_store: LocalMediaStore) -> None:
    defs = build_definitions(local_store)
    sensor = defs.resolve_sensor_def("catalog_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "catalog_job"
    assert defs.resolve_schedule_def("nightly_catalog") is not None  # the backstop stays
    run_id = finish(instance)
    context = dg.build_sensor_context(instance=instance, resources={"store": local_store})
    request = sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == f"catalog-after-{run_id}"
    assert context.cursor is not None
