"""Two uploads on one video id: the real `source_video` step refuses the second, and it is quarantined."""

import json
from pathlib import Path

import dagster as dg
import pytest

from autoedit_dagster.assets.ingest import source_video
from autoedit_dagster.names import TAG_UPLOAD_KEY, id_claim_key, quarantine_key
from autoedit_dagster.partitions import legacy_video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore, build_resources
from autoedit_dagster.sensors import build_quarantine_sensor
from tests.sensors.test_video_ids import COLLIDING
from testsupport.media_factory import ffmpeg

OWNER, INTRUDER = COLLIDING
VIDEO_ID = legacy_video_id_for_upload(OWNER)  # the 32-bit id both map to: a partition of an earlier version


@pytest.fixture
def store(tmp_path: Path) -> LocalMediaStore:
    store = LocalMediaStore(root=str(tmp_path / "store"))
    for key, colour in ((OWNER, "red"), (INTRUDER, "blue")):
        clip = tmp_path / f"{colour}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:s=160x90:r=25:d=1", "-f", "lavfi", "-i", "sine=d=1",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(clip))  # fmt: skip
        store.put_file(clip, key)
    return store


def ingest(store: LocalMediaStore, instance: dg.DagsterInstance, **tags: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [source_video], partition_key=VIDEO_ID, instance=instance, resources=build_resources(store),
        tags=tags, raise_on_error=False,
    )  # fmt: skip


def test_a_run_for_another_upload_on_an_owned_id_is_refused_and_quarantined(store: LocalMediaStore) -> None:
    """A run tagged with a second upload on an owned id is refused: it never re-ingests into the
    owner's partition. Here the run is one queued by a sensor of an earlier version.
    """
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", [VIDEO_ID])
    assert ingest(store, instance, **{TAG_UPLOAD_KEY: OWNER}).success
    source_key = f"work/{VIDEO_ID}/source_video.json"
    owned = store.read_bytes(source_key)
    assert json.loads(owned)["upload_key"] == OWNER

    refused = ingest(store, instance, **{TAG_UPLOAD_KEY: INTRUDER})
    assert not refused.success
    assert store.read_bytes(source_key) == owned  # nothing of the owner's was replaced
    assert json.loads(store.read_bytes(id_claim_key(VIDEO_ID)))["upload_key"] == OWNER

    sensor = build_quarantine_sensor()
    sensor(
        dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=refused.get_run_failure_event(), dagster_instance=instance,
            dagster_run=refused.dagster_run, resources={"store": store},
        ).for_run_failure()
    )  # fmt: skip
    record = json.loads(store.read_bytes(quarantine_key(VIDEO_ID, INTRUDER)))
    assert record["upload_key"] == INTRUDER and record["video_id"] == VIDEO_ID
    assert f"video id {VIDEO_ID} belongs to {OWNER}; refusing {INTRUDER}" in record["reason"]
    # The record sits beside, not over, the owner's quarantine record.
    assert not store.exists(quarantine_key(VIDEO_ID))

    # A run without upload tags (a backfill, the UI) of that id ingests the owner, not the other.
    again = ingest(store, instance)
    assert again.success
    assert json.loads(store.read_bytes(source_key))["upload_key"] == OWNER


def test_an_unowned_id_two_uploads_share_is_refused_not_guessed(store: LocalMediaStore) -> None:
    """A run launched without upload tags on a legacy id both uploads map to, before either claimed it."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", [VIDEO_ID])
    result = ingest(store, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"2 uploads under uploads/ map to video id {VIDEO_ID}" in failure.event_specific_data.error.message
    assert not store.exists(id_claim_key(VIDEO_ID)) and not store.exists(f"work/{VIDEO_ID}/source_video.json")
