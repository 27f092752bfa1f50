"""The simulated archive (testsupport/archive.py) written in batches reads back exactly as one written
event by event: the bench's 10k figures are about the same rows the old seeding wrote."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_spec import AssetCheckKey

import testsupport.archive as archive
from testsupport.servers import Instance


def _contents(instance: dg.DagsterInstance) -> dict:
    render = dg.AssetKey(list(archive.RENDER))
    runs = sorted(instance.get_runs(), key=lambda run: run.tags[archive.TAG_VIDEO_ID])
    video_of = {run.run_id: run.tags[archive.TAG_VIDEO_ID] for run in runs}
    checks = {
        check: sorted(
            (video_of[e.run_id], e.partition, e.status.value)
            for e in instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(render, check), limit=100
            )
        )
        for check in archive.CHECKS
    }
    return {
        "runs": [(run.tags[archive.TAG_VIDEO_ID], run.status.value) for run in runs],
        "events": [sorted(str(e.dagster_event_type) for e in instance.all_logs(run.run_id)) for run in runs],
        "materialized": {
            "/".join(path): sorted(instance.get_materialized_partitions(dg.AssetKey(list(path))))
            for path in archive.ASSETS
        },
        "checks": checks,
        "partitions": sorted(instance.get_dynamic_partitions("videos")),
    }


def test_batched_seed_reads_back_like_one_write_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done, queued = archive.video_ids(3), archive.video_ids(1, start=3)
    contents = {}
    for mode in ("batched", "one by one"):
        instance = Instance.create(tmp_path / mode.replace(" ", "-"))
        with monkeypatch.context() as patch, instance.open() as dagster_instance:
            if mode == "one by one":
                unbatched = type("Unbatched", (), {"commit": lambda self: None})()
                patch.setattr(archive, "batched_writes", lambda _, u=unbatched: contextlib.nullcontext(u))
            archive.seed_archive(dagster_instance, done, queued, batch=2)
            contents[mode] = _contents(dagster_instance)
        # No leftover template shard among the run files.
        assert not list(instance.home.rglob("__seed_template__*"))
    assert contents["batched"] == contents["one by one"]
    assert len(contents["batched"]["runs"]) == 4
    # Unpartitioned, as the render checks record them: each run's evaluation, no partition.
    assert {(video, None, "SUCCEEDED") for video in done} <= set(contents["batched"]["checks"]["loudness_on_target"])
