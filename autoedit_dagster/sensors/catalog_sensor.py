"""`catalog_sensor`: `video_catalog` refreshed after every finished video run, not only at night.

Each tick reads the runs that finished since its cursor (the last one's update time; on the first
tick, the newest finished run only) and, when one of them was about videos (a video's run, or a
backfill's over a range of them), requests one `catalog_job` run for all of them (its run key names
the newest, so a repeated tick requests nothing twice). A catalog run still queued will read the
store when it starts: then nothing more is requested. The catalog reads the quarantine records, so
a failed run counts once its record is written (`quarantine_sensor`) or after `QUARANTINE_GRACE_S`
(a refused upload's record has another name). The nightly schedule stays as the backstop.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

from ..jobs import catalog_job
from ..names import quarantine_key
from ..resources import MediaStore
from .upload_sensor import video_id_for_run

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
QUARANTINE_GRACE_S = 120.0
BATCH = 500
# Backfill runs of assets with a multi-run policy carry a partition range instead of one partition.
RANGE_START_TAG = "dagster/asset_partition_range_start"


def _cursor_time(cursor: str | None) -> float:
    try:
        return float(json.loads(cursor)["after"]) if cursor else 0.0
    except (ValueError, KeyError, TypeError):
        return 0.0


def _about_videos(run: dg.DagsterRun) -> bool:
    """A run that may have published or quarantined videos: one video's (its tags say which) or a
    backfill's over a range of them; not the catalog's own, retention or sweeps."""
    if run.job_name == catalog_job.name:
        return False
    return video_id_for_run(run.tags) is not None or RANGE_START_TAG in run.tags


def _updated(record: dg.RunRecord) -> float:
    stamp = record.update_timestamp  # naive UTC from the run storage
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def catalog_refresh(
    instance: dg.DagsterInstance, store: MediaStore, cursor: str | None, now: float
) -> tuple[dg.RunRequest | dg.SkipReason, str | None]:
    """(what to do, the new cursor) for the runs finished after `cursor`.

    Without a cursor (the sensor's first tick) only the newest finished run counts: a long
    history is not walked, one refresh covers it.
    """
    if cursor:
        after = _cursor_time(cursor)
    else:
        newest = instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED), order_by="update_timestamp", ascending=False, limit=1
        )
        if not newest:
            return dg.SkipReason("no run has finished yet"), None
        after = _updated(newest[0]) - 0.001
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=datetime.fromtimestamp(after, UTC)),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    counted: list[dg.RunRecord] = []
    for record in records:
        run = record.dagster_run
        video_id = video_id_for_run(run.tags)
        ended = record.end_time or _updated(record)
        if (
            video_id is not None
            and run.status == dg.DagsterRunStatus.FAILURE
            and now - ended < QUARANTINE_GRACE_S
            and not store.exists(quarantine_key(video_id))
        ):
            break  # wait for its quarantine record (and hold back the runs after it)
        counted.append(record)  # runs not about videos are passed over: the cursor moves on
    videos = [r for r in counted if _about_videos(r.dagster_run)]
    new_cursor = json.dumps({"after": _updated(counted[-1])}) if counted else cursor
    if not videos:
        return dg.SkipReason("no video run finished since the last refresh"), new_cursor
    waiting = instance.get_run_records(filters=dg.RunsFilter(job_name=catalog_job.name, statuses=WAITING), limit=1)
    if waiting:
        return dg.SkipReason(f"catalog run {waiting[0].dagster_run.run_id} is queued: it will read them"), new_cursor
    newest = videos[-1].dagster_run
    return (
        dg.RunRequest(run_key=f"catalog-after-{newest.run_id}", tags={"autoedit/catalog_after": newest.run_id}),
        new_cursor,
    )


def build_catalog_sensor(minimum_interval_seconds: int = 15) -> dg.SensorDefinition:
    @dg.sensor(
        name="catalog_sensor",
        job=catalog_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes video_catalog after video runs finish (one catalog run for all finished since).",
    )
    def catalog_sensor(context: dg.SensorEvaluationContext, store: MediaStore):
        result, cursor = catalog_refresh(context.instance, store, context.cursor, datetime.now(UTC).timestamp())
        if cursor != context.cursor and cursor is not None:
            context.update_cursor(cursor)
        return result

    return catalog_sensor
