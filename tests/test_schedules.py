"""Retention deletes only old intermediates of finished videos; never uploads/ or renders/."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from autoedit_dagster.resources import LocalMediaStore
from autoedit_dagster.schedules import expired_work, retention_job


def _finished(store: LocalMediaStore, video_id: str, when: datetime) -> None:
    store.write_bytes(f"uploads/{video_id}.mp4", b"upload")
    store.write_bytes(f"renders/{video_id}/tate/final.mp4", b"render")
    report = {"video_id": video_id, "profile": "tate", "finished_at": when.isoformat()}
    store.write_bytes(f"renders/{video_id}/tate/report.json", json.dumps(report).encode())
    store.write_bytes(f"work/{video_id}/media_analysis.parquet", b"table")


def test_retention_deletes_only_old_work(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    now = datetime.now(UTC)
    _finished(store, "old-00000001", now - timedelta(days=10))
    _finished(store, "new-00000002", now - timedelta(days=1))
    store.write_bytes("work/running-00000003/media_analysis.parquet", b"no render yet")
    assert expired_work(store, timedelta(days=7), now) == ["work/old-00000001/"]

    result = retention_job.execute_in_process(resources={"store": store})
    assert result.success
    assert not (tmp_path / "work" / "old-00000001").exists()
    assert (tmp_path / "work" / "new-00000002" / "media_analysis.parquet").exists()
    assert (tmp_path / "work" / "running-00000003" / "media_analysis.parquet").exists()
    for video_id in ("old-00000001", "new-00000002"):
        assert (tmp_path / "uploads" / f"{video_id}.mp4").read_bytes() == b"upload"
        assert (tmp_path / "renders" / video_id / "tate" / "final.mp4").read_bytes() == b"render"


def test_retention_dry_run_deletes_nothing(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    _finished(store, "old-00000001", datetime.now(UTC) - timedelta(days=30))
    config = dg.RunConfig(ops={"delete_expired_work": {"config": {"dry_run": True}}})
    assert retention_job.execute_in_process(resources={"store": store}, run_config=config).success
    assert (tmp_path / "work" / "old-00000001" / "media_analysis.parquet").exists()
