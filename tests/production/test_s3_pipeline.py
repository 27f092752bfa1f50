"""The per-video pipeline on S3 end to end: upload -> real upload sensor -> `video_job` in two processes.

Storage is chosen only by AUTOEDIT_STORAGE=s3://bucket/prefix (+ AWS_ENDPOINT_URL) on a moto server
over HTTP. The run is split: `source_video` + `media_analysis` in this process with a temp folder
that is deleted afterwards, then the rest in a fresh worker process with a temp folder and working
directory of its own, so any step reading something from local disk instead of S3 fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from autoedit_dagster.assets import ANALYSIS_ASSETS, PROFILE_ASSETS
from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.jobs import video_job
from autoedit_dagster.names import TAG_UPLOAD_KEY
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import S3MediaStore, default_storage_root
from autoedit_dagster.resources.media_store import TMP_PREFIX
from autoedit_dagster.sensors import build_quarantine_sensor, build_upload_sensor
from autoedit_dagster.sensors.upload_sensor import _key_digest
from tests.production.conftest import (
    PREFIX,
    Bucket,
    fake_aws,
    ffprobe,
    finish,
    new_bucket,
    new_instance,
    production_env,
    start_worker,
)
from testsupport.media_factory import replace_render

FIRST_PHASE = [dg.AssetKey("source_video"), dg.AssetKey("media_analysis")]
SECOND_PHASE = [a.key for a in ANALYSIS_ASSETS if a.key not in FIRST_PHASE] + [a.key for a in PROFILE_ASSETS["tate"]]
RENDER_FILES = {
    "final.mp4", "thumb.jpg", "timeline.png", "report.json", "edit.fcpxml", "edit.fcp7.xml", "edit.edl",
    "edit.otio.json",
}  # fmt: skip
WORK_FILES = {
    "source_video.json", "media_analysis.parquet", "speech_segments.parquet", "shots.parquet",
    "tate/crop_path.parquet", "tate/edit_timeline.json", "tate/render.json", "tate/previews.json",
    "tate/timeline_exports.json", "tate/edit_report.json",
}  # fmt: skip


@dataclass
class S3Run:
    bucket: Bucket
    instance: dg.DagsterInstance
    upload_key: str
    video_id: str
    first_tick: dg.SensorResult
    second_tick: dg.SensorResult
    phase1: dg.ExecuteInProcessResult
    phase1_leftovers: list[str]
    phase2_run_id: str
    phase2_tmp: Path


def tick(sensor: dg.SensorDefinition, store: S3MediaStore, instance: dg.DagsterInstance, cursor: str | None):
    result = sensor(dg.build_sensor_context(cursor=cursor, instance=instance, resources={"store": store}))
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.fixture(scope="module")
def s3_run(moto_endpoint: str, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Run]:
    base = tmp_path_factory.mktemp("s3_pipeline")
    with pytest.MonkeyPatch.context() as mp:
        fake_aws(mp)
        bucket = new_bucket(moto_endpoint)
        instance = new_instance(base / "dagster_home")
        production_env(mp, bucket, base / "dagster_home")
        # A unique name: the video id must not collide with anything in the local default storage.
        upload_key = bucket.upload(clip, f"Interview {uuid.uuid4().hex[:6]}.mp4")

        defs = build_definitions()  # the store comes from AUTOEDIT_STORAGE alone
        store = defs.resources["store"]
        assert isinstance(store, S3MediaStore)
        first = tick(defs.resolve_sensor_def("upload_sensor"), store, instance, None)
        # The same sensor code with its clock past the 5 s settle window, instead of sleeping.
        later = build_upload_sensor(video_job, clock=lambda: time.time() + 60)
        second = tick(later, store, instance, first.cursor)
        for request in second.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        assert len(second.run_requests or []) == 1
        request = second.run_requests[0]

        phase1_tmp = base / "phase1_tmp"
        phase1_tmp.mkdir()
        with pytest.MonkeyPatch.context() as temp:
            temp.setattr(tempfile, "tempdir", str(phase1_tmp))
            phase1 = defs.resolve_job_def("video_job").execute_in_process(
                partition_key=request.partition_key, instance=instance, tags=request.tags,
                asset_selection=FIRST_PHASE, raise_on_error=False,
            )  # fmt: skip
        leftovers = [p.name for p in phase1_tmp.iterdir()]
        shutil.rmtree(phase1_tmp)

        phase2_tmp = base / "phase2_tmp"
        select = [key.to_user_string() for key in SECOND_PHASE]
        worker = start_worker(request.partition_key, tmpdir=phase2_tmp, tags=dict(request.tags), select=select)
        run_id = finish(worker, timeout=120)
        yield S3Run(bucket, instance, upload_key, request.partition_key, first, second, phase1, leftovers, run_id,
                    phase2_tmp)  # fmt: skip
        instance.dispose()


def materialized(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        record.dagster_event.asset_key.to_user_string()
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if record.dagster_event and record.dagster_event.asset_key
    }


def test_sensor_turns_the_s3_upload_into_a_partition_and_a_run(s3_run: S3Run) -> None:
    # Tick 1 (the code location's own sensor, real clock): the fresh upload is still settling.
    assert not s3_run.first_tick.run_requests
    # The cursor remembers a settling upload by a digest of its key (bounded whatever the key's length).
    assert _key_digest(s3_run.upload_key) in json.loads(s3_run.first_tick.cursor)["pending"]
    # Tick 2: one run for the upload's partition, keyed by the S3 ETag, and the partition to add.
    etag = s3_run.bucket.client.head_object(Bucket=s3_run.bucket.name, Key=f"{PREFIX}/{s3_run.upload_key}")["ETag"]
    (request,) = s3_run.second_tick.run_requests
    assert s3_run.video_id == video_id_for_upload(s3_run.upload_key)
    assert request.run_key == f"{s3_run.video_id}:{etag.strip(chr(34))}"
    assert request.tags[TAG_UPLOAD_KEY] == s3_run.upload_key
    assert s3_run.instance.has_dynamic_partition("videos", s3_run.video_id)


def test_renders_and_intermediates_land_in_the_bucket_under_the_prefix(s3_run: S3Run) -> None:
    keys = set(s3_run.bucket.objects())
    assert all(key.startswith(f"{PREFIX}/") for key in keys)
    renders = f"{PREFIX}/renders/{s3_run.video_id}/tate/"
    work = f"{PREFIX}/work/{s3_run.video_id}/"
    assert {k.removeprefix(renders) for k in keys if k.startswith(renders)} == RENDER_FILES
    assert {k.removeprefix(work) for k in keys if k.startswith(work)} == WORK_FILES
    expected = {renders + name for name in RENDER_FILES} | {work + name for name in WORK_FILES}
    # The upload, and the claim naming it the owner of its id; nothing left in staging/.
    assert keys == expected | {f"{PREFIX}/{s3_run.upload_key}", f"{PREFIX}/ids/{s3_run.video_id}.json"}
    assert not [k for k in keys if TMP_PREFIX in k or "/." in k]
    assert s3_run.bucket.open_multipart_uploads() == []
    # Nothing went to the local default storage instead.
    assert not (default_storage_root() / "renders" / s3_run.video_id).exists()
    assert not (default_storage_root() / "work" / s3_run.video_id).exists()


def test_intermediates_in_the_bucket_are_parquet_and_json(s3_run: S3Run, clip: Path) -> None:
    def get(key: str) -> bytes:
        obj = s3_run.bucket.client.get_object(Bucket=s3_run.bucket.name, Key=f"{PREFIX}/{key}")
        return obj["Body"].read()

    work = f"work/{s3_run.video_id}"
    analysis = pl.read_parquet(io.BytesIO(get(f"{work}/media_analysis.parquet")))
    assert analysis.height == 50  # 2 s at 25 fps: one row per frame
    assert pl.read_parquet(io.BytesIO(get(f"{work}/tate/crop_path.parquet"))).height == 50
    source = json.loads(get(f"{work}/source_video.json"))
    assert source["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert source["uri"] == f"s3://{s3_run.bucket.name}/{PREFIX}/{s3_run.upload_key}"
    report = json.loads(get(f"renders/{s3_run.video_id}/tate/report.json"))
    assert report["video_id"] == s3_run.video_id
    assert report["render_uri"] == f"s3://{s3_run.bucket.name}/{PREFIX}/renders/{s3_run.video_id}/tate/final.mp4"


def test_render_downloaded_from_s3_is_a_vertical_mp4(s3_run: S3Run, tmp_path: Path) -> None:
    final = s3_run.bucket.download(f"renders/{s3_run.video_id}/tate/final.mp4", tmp_path / "final.mp4")
    probe = ffprobe(final)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert audio["codec_name"] == "aac"
    assert "mp4" in probe["format"]["format_name"]
    assert 1.5 < float(probe["format"]["duration"]) < 2.5


def test_later_steps_read_everything_from_s3(s3_run: S3Run) -> None:
    """Phase 2 ran in another process after phase 1's temp folder was deleted: it had only S3."""
    assert s3_run.phase1.success
    assert {e.asset_key for e in s3_run.phase1.get_asset_materialization_events()} == set(FIRST_PHASE)
    assert s3_run.phase1_leftovers == []  # no local copy survived phase 1 for phase 2 to find

    run = s3_run.instance.get_run_by_id(s3_run.phase2_run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert materialized(s3_run.instance, s3_run.phase2_run_id) == {k.to_user_string() for k in SECOND_PHASE}
    # The phase-1 values phase 2 needed came through the IO managers (i.e. from the bucket).
    records = s3_run.instance.all_logs(s3_run.phase2_run_id, of_type=dg.DagsterEventType.LOADED_INPUT)
    loaded = {
        (event.step_key, event.event_specific_data.input_name, event.event_specific_data.manager_key)
        for event in (record.dagster_event for record in records)
        if event is not None
    }
    assert ("speech_segments", "media_analysis", "parquet_io_manager") in loaded
    assert ("tate__render", "source_video", "json_io_manager") in loaded
    assert [p.name for p in s3_run.phase2_tmp.iterdir()] == []  # and it cleaned up its own temp files


def test_rerenders_on_s3_publish_only_verified_whole_sets(
    s3_run: S3Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-render failing its blocking checks leaves the published S3 set byte-identical (its staging is
    the failure sensor's to delete); a good one replaces the whole set and leaves nothing staged."""
    renders = f"{PREFIX}/renders/{s3_run.video_id}/tate/"
    store = S3MediaStore(bucket=s3_run.bucket.name, prefix=PREFIX, endpoint_url=s3_run.bucket.endpoint)

    def published() -> dict[str, str]:
        return {key: obj["ETag"] for key, obj in s3_run.bucket.objects(renders).items()}

    def rerender() -> dg.ExecuteInProcessResult:
        return build_definitions(store).resolve_job_def("video_job").execute_in_process(
            partition_key=s3_run.video_id, instance=s3_run.instance, raise_on_error=False,
            tags={TAG_UPLOAD_KEY: s3_run.upload_key}, asset_selection=[a.key for a in PROFILE_ASSETS["tate"]],
        )  # fmt: skip

    before = published()
    with monkeypatch.context() as patch:
        replace_render(patch, tmp_path, wrong=True)
        failed = rerender()
    assert not failed.success
    assert {e.check_name: e.passed for e in failed.get_asset_check_evaluations()}["size_matches_profile"] is False
    assert published() == before
    staged = f"{PREFIX}/staging/{failed.run_id}/"
    assert s3_run.bucket.objects(staged)
    sensor = build_quarantine_sensor()
    sensor(
        dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=failed.get_run_failure_event(), dagster_instance=s3_run.instance,
            dagster_run=failed.dagster_run, resources={"store": store},
        ).for_run_failure()
    )  # fmt: skip
    assert s3_run.bucket.objects(staged) == {}

    with monkeypatch.context() as patch:
        replace_render(patch, tmp_path, comment="on s3")
        good = rerender()
    assert good.success
    after = published()
    assert set(after) == set(before)
    assert after[renders + "final.mp4"] != before[renders + "final.mp4"]
    assert after[renders + "report.json"] != before[renders + "report.json"]
    assert s3_run.bucket.objects(f"{PREFIX}/staging/") == {}
