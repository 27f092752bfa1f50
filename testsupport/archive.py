"""A simulated archive on a Dagster instance: videos whose `video_job` ran, without rendering anything.

For the status tests and `bench/archive_scale.py`. Per video it writes what a successful
`video_job` run leaves in the instance: the `videos` partition, a SUCCESS run tagged with it, and
for each of the job's assets a planned and a stored materialization (with the path metadata the
real assets publish), for each render check a planned and a passed evaluation in the video's
partition. `queued` more videos get a QUEUED run with its planned events only (never executed),
like the upload sensor's runs waiting for the coordinator. Event rows are the real event types,
so every Dagster query (partition statuses, latest run per partition, check executions) reads
them as it reads real runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from autoedit_dagster.names import TAG_VIDEO_ID
from autoedit_dagster.partitions import videos as videos_partitions

JOB = "video_job"
LOCATION = "autoedit_dagster.definitions"
PROFILE = "tate"
# video_job's assets (ingest, analysis and the default profile) and the checks of its render.
ASSETS = (
    ("source_video",),
    ("media_analysis",),
    ("shots",),
    ("speech_segments",),
    *(
        (PROFILE, name)
        for name in ("crop_path", "edit_timeline", "render", "previews", "timeline_exports", "edit_report")
    ),
)
RENDER = (PROFILE, "render")
CHECKS = (
    "size_matches_profile",
    "duration_matches_timeline",
    "loudness_on_target",
    "audio_video_in_sync",
    "first_frame_not_black",
)


def video_ids(count: int, start: int = 0) -> list[str]:
    """`count` ids of the 64-bit form (`<slug>-<16 hex>`), distinct for distinct indexes."""
    return [f"archive-{i:06d}-{uuid.UUID(int=i).hex[-16:]}" for i in range(start, start + count)]


def _entry(run_id: str, event_type: DagsterEventType, data: object, when: float) -> EventLogEntry:
    event = DagsterEvent(event_type_value=event_type.value, job_name=JOB, event_specific_data=data)  # type: ignore[arg-type]
    return EventLogEntry(
        error_info=None, level=20, user_message="", run_id=run_id, timestamp=when, job_name=JOB, dagster_event=event
    )


def _planned(run_id: str, video_id: str, when: float) -> list[EventLogEntry]:
    subset = videos_partitions.empty_subset().with_partition_keys([video_id])
    events = [
        _entry(
            run_id,
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            AssetMaterializationPlannedData(dg.AssetKey(list(path)), partition=video_id),
            when,
        )
        for path in ASSETS
    ]
    events += [
        _entry(
            run_id,
            DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
            AssetCheckEvaluationPlanned(
                asset_key=dg.AssetKey(list(RENDER)), check_name=check, partitions_subset=subset
            ),
            when,
        )
        for check in CHECKS
    ]
    return events


def _run(instance: dg.DagsterInstance, video_id: str, status: DagsterRunStatus) -> str:
    run_id = str(uuid.uuid4())
    tags = {"dagster/partition": video_id, TAG_VIDEO_ID: video_id}
    # A queued run names where to launch it from (the workspace's code location, by name).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(LOCATION), "__repository__"), JOB)
    instance.add_run(DagsterRun(job_name=JOB, run_id=run_id, status=status, tags=tags, remote_job_origin=origin))
    return run_id


def seed_archive(
    instance: dg.DagsterInstance, done: Sequence[str], queued: Sequence[str] = (), storage: str = "/archive"
) -> None:
    """`done` videos processed by a successful run each, `queued` ones waiting in a QUEUED run."""
    instance.add_dynamic_partitions("videos", [*done, *queued])
    storage_ = instance.event_log_storage
    for video_id in done:
        run_id = _run(instance, video_id, DagsterRunStatus.SUCCESS)
        when = time.time()
        for entry in _planned(run_id, video_id, when):
            storage_.store_event(entry)
        render_event = None
        for path in ASSETS:
            metadata = {"uri": dg.MetadataValue.path(f"{storage}/work/{video_id}/{'/'.join(path)}.json")}
            if path == RENDER:
                metadata["video"] = dg.MetadataValue.path(f"{storage}/renders/{video_id}/{PROFILE}/final.mp4")
            materialization = dg.AssetMaterialization(dg.AssetKey(list(path)), partition=video_id, metadata=metadata)
            storage_.store_event(
                _entry(run_id, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization), when)
            )
            if path == RENDER:
                render_event = _latest_record_id(instance, path, video_id)
        target = AssetCheckEvaluationTargetMaterializationData(storage_id=render_event, run_id=run_id, timestamp=when)
        for check in CHECKS:
            evaluation = dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(list(RENDER)), check_name=check, passed=True, description=f"{check} ok",
                target_materialization_data=target, partition=video_id,
            )  # fmt: skip
            storage_.store_event(_entry(run_id, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation, when))
    for video_id in queued:
        run_id = _run(instance, video_id, DagsterRunStatus.QUEUED)
        for entry in _planned(run_id, video_id, time.time()):
            storage_.store_event(entry)


def _latest_record_id(instance: dg.DagsterInstance, path: Iterable[str], video_id: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(list(path)), asset_partitions=[video_id]), limit=1
    ).records
    return records[0].storage_id
