"""Schedules: the nightly catalog refresh and the weekly retention of intermediates."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from .jobs import catalog_job
from .resources import MediaStore


class RetentionConfig(dg.Config):
    """Which intermediates are old enough to delete."""

    older_than_days: float = 7.0
    dry_run: bool = False


def expired_work(store: MediaStore, older_than: timedelta, now: datetime) -> list[str]:
    """`work/<video_id>/` folders of videos whose every render finished more than `older_than` ago."""
    newest: dict[str, datetime] = {}
    for obj in store.list("renders/"):
        if obj.key.endswith("/report.json"):
            report = json.loads(store.read_bytes(obj.key))
            finished = datetime.fromisoformat(report["finished_at"])
            video_id = report["video_id"]
            newest[video_id] = max(finished, newest.get(video_id, finished))
    return sorted(f"work/{video_id}/" for video_id, finished in newest.items() if now - finished > older_than)


@dg.op(description="Deletes work/<video_id>/ of finished videos; never uploads/ or renders/.")
def delete_expired_work(context: dg.OpExecutionContext, config: RetentionConfig, store: MediaStore) -> int:
    prefixes = expired_work(store, timedelta(days=config.older_than_days), datetime.now(UTC))
    deleted = 0
    for prefix in prefixes:
        if config.dry_run:
            context.log.info(f"would delete {prefix}")
            continue
        deleted += store.delete_prefix(prefix)
    context.add_output_metadata({"folders": len(prefixes), "objects_deleted": deleted, "dry_run": config.dry_run})
    return deleted


@dg.job(description="Delete intermediates of videos finished more than a week ago.")
def retention_job() -> None:
    delete_expired_work()


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
    description="Delete week-old work/ intermediates every Sunday at 03:00.",
)
