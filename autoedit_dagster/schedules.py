"""Schedules: the nightly catalog refresh, the weekly retention of intermediates, and temp-file sweeps.

Retention keeps everything a later run needs: the analysis (`source_video`, `media_analysis`,
`speech_segments`, `shots`: small, and what a new profile's backfill loads instead of
re-analysing) and each profile's small values that point at its published deliverables. It
deletes only per-frame tables that a profile run rebuilds from the analysis (`<profile>/crop_path`)
and records each deletion as an observation of that partition, shown in the UI. Videos with a
run queued or in progress are skipped.

The sweep deletes temporary files a crash left behind (see `sweep_temp_files`); it runs when the
daemon starts and every hour after (`temp_sweep_sensor`), and with retention. Reads no
environment variables.
"""

import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg

from .engine import tempfiles
from .engine.config import PROFILES
from .jobs import catalog_job
from .names import RENDERS_PREFIX, REPORT_NAME, STAGING_PREFIX, TAG_VIDEO_ID
from .resources import MediaStore
from .resources.io_managers import PolarsParquetIOManager

# Per-frame tables a profile run rebuilds from the kept analysis: the only ones retention deletes.
REBUILDABLE = {name: dg.AssetKey([name, "crop_path"]) for name, profile in PROFILES.items() if profile.aspect}

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class RetentionConfig(dg.Config):
    """Which intermediates are old enough to delete."""

    older_than_days: float = 7.0
    dry_run: bool = False


class SweepConfig(dg.Config):
    """Which temporary files are old enough to be a crash's leftovers."""

    older_than_hours: float = tempfiles.SAFE_AGE_SECONDS / 3600


def expired_work(store: MediaStore, older_than: timedelta, now: datetime) -> dict[str, list[str]]:
    """{video_id: [profile, ...]} of renders that finished more than `older_than` ago."""
    expired: dict[str, list[str]] = defaultdict(list)
    for obj in store.list(RENDERS_PREFIX):
        if obj.key.endswith(f"/{REPORT_NAME}"):
            report = json.loads(store.read_bytes(obj.key))
            if now - datetime.fromisoformat(report["finished_at"]) > older_than:
                expired[report["video_id"]].append(report["profile"])
    return {video_id: sorted(profiles) for video_id, profiles in sorted(expired.items())}


def video_in_flight(instance: dg.DagsterInstance, video_id: str) -> bool:
    """True if a run for `video_id` is queued or in progress (by Dagster's partition tag or ours)."""
    return any(
        instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags={tag: video_id}), limit=1)
        for tag in ("dagster/partition", TAG_VIDEO_ID)
    )


def rebuildable_key(store: MediaStore, video_id: str, profile: str) -> str:
    """The store key of a profile's rebuildable table for one video (the IO manager's layout)."""
    return PolarsParquetIOManager(store=store).storage_key(REBUILDABLE[profile], video_id)


@dg.op(description="Deletes per-profile tables rebuilt from the analysis; keeps the analysis, uploads/, renders/.")
def delete_expired_work(context: dg.OpExecutionContext, config: RetentionConfig, store: MediaStore) -> int:
    expired = expired_work(store, timedelta(days=config.older_than_days), datetime.now(UTC))
    deleted, skipped = 0, []
    for video_id, profiles in expired.items():
        # Checked per video, just before deleting: a run queued meanwhile is still seen.
        if video_in_flight(context.instance, video_id):
            skipped.append(video_id)
            continue
        for profile in (p for p in profiles if p in REBUILDABLE):
            key = rebuildable_key(store, video_id, profile)
            if config.dry_run:
                context.log.info(f"would delete {key}")
            elif store.delete(key):
                # Shown on the partition in the UI (Dagster's storages cannot un-materialize one).
                context.log_event(
                    dg.AssetObservation(
                        REBUILDABLE[profile], partition=video_id, metadata={"deleted_by_retention": key}
                    )
                )
                deleted += 1
    if skipped:
        context.log.info(f"skipped {len(skipped)} video(s) with a run in flight: {', '.join(skipped[:20])}")
    metadata = {"videos": len(expired), "skipped_in_flight": len(skipped), "objects_deleted": deleted}
    context.add_output_metadata({**metadata, "dry_run": config.dry_run})
    return deleted


def stale_staging(store: MediaStore, instance: dg.DagsterInstance, older_than: float, now: float) -> list[str]:
    """`staging/<run_id>/` folders of runs no longer queued or in progress, untouched for `older_than` s."""
    newest: dict[str, float] = {}
    for obj in store.list(STAGING_PREFIX):
        run_id = obj.key[len(STAGING_PREFIX) :].split("/", 1)[0]
        newest[run_id] = max(obj.mtime, newest.get(run_id, 0.0))
    stale = []
    for run_id, mtime in sorted(newest.items()):
        run = instance.get_run_by_id(run_id)
        if now - mtime > older_than and (run is None or run.status not in IN_FLIGHT):
            stale.append(f"{STAGING_PREFIX}{run_id}/")
    return stale


@dg.op(description="Deletes temporary files and staging folders left by crashed runs (never a live run's).")
def sweep_temp_files(context: dg.OpExecutionContext, config: SweepConfig, store: MediaStore) -> int:
    """The store's `.autoedit-tmp-*` and `.*.part` files, this machine's `autoedit-{plan,render,
    loudness}-*` temp folders of dead processes, and `staging/<run_id>/` of runs that ended."""
    older_than, now = config.older_than_hours * 3600, time.time()
    files = store.sweep_temp_files(older_than, now)
    folders = tempfiles.sweep_temp_dirs(older_than=older_than, now=now)
    staging = stale_staging(store, context.instance, older_than, now)
    staged = sum(store.delete_prefix(prefix) for prefix in staging)
    for item in [*files, *map(str, folders), *staging]:
        context.log.info(f"swept {item}")
    context.add_output_metadata(
        {"store_files": len(files), "temp_folders": len(folders), "staging_folders": len(staging)}
    )
    return len(files) + len(folders) + staged


@dg.job(description="Delete rebuildable intermediates of videos finished more than a week ago, and crash leftovers.")
def retention_job() -> None:
    delete_expired_work()
    sweep_temp_files()


@dg.job(description="Delete temporary files and staging folders left by crashed runs.")
def sweep_job() -> None:
    sweep_temp_files()


@dg.sensor(
    job=sweep_job,
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sweeps crash leftovers when the daemon starts, then every hour.",
)
def temp_sweep_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest:
    # One run per hour at most, also across daemon restarts (the run key de-duplicates).
    return dg.RunRequest(run_key=datetime.now(UTC).strftime("sweep-%Y%m%dT%H"))


catalog_schedule = dg.ScheduleDefinition(
    name="nightly_catalog",
    job=catalog_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuild video_catalog every night at 02:00.",
)

retention_schedule = dg.ScheduleDefinition(
    name="weekly_retention",
    job=retention_job,
    cron_schedule="0 3 * * 0",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Delete week-old rebuildable intermediates and crash leftovers every Sunday at 03:00.",
)
