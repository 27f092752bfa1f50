"""Upload keys that are valid S3 names but not valid paths: `uploads//x.mp4` (an empty segment)."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.jobs import video_job
from autoedit_dagster.names import TAG_UPLOAD_KEY
from autoedit_dagster.resources import S3MediaStore
from autoedit_dagster.sensors import build_upload_sensor
from tests.production.conftest import PREFIX, Production

KEY = "uploads//x.mp4"


def test_an_s3_key_with_an_empty_segment_passes_the_whole_pipeline(production: Production, clip: Path) -> None:
    """An odd upload key is edited, not failed as an `unsafe storage key`, and the quarantine sensor never raises."""
    bucket = production.bucket
    bucket.client.upload_file(str(clip), bucket.name, f"{PREFIX}/{KEY}")
    defs = build_definitions()
    store = defs.resources["store"]
    assert isinstance(store, S3MediaStore)
    sensor = build_upload_sensor(video_job, clock=lambda: time.time() + 60)  # past the settle window
    tick = sensor(dg.build_sensor_context(instance=production.instance, resources={"store": store}))
    assert isinstance(tick, dg.SensorResult)
    (request,) = tick.run_requests or []
    assert request.tags[TAG_UPLOAD_KEY] == KEY
    production.instance.add_dynamic_partitions("videos", [request.partition_key])

    result = defs.resolve_job_def("video_job").execute_in_process(
        partition_key=request.partition_key, instance=production.instance, tags=request.tags
    )
    assert result.success
    video_id = request.partition_key
    assert store.stat(f"renders/{video_id}/tate/final.mp4").size > 0
    assert store.exists(f"renders/{video_id}/tate/report.json")
    assert store.stat(KEY).size == clip.stat().st_size  # the upload is untouched
