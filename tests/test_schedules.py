"""Retention keeps what later runs need and skips videos in flight; sweeps delete only crash leftovers."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.engine import tempfiles
from autoedit_dagster.names import STAGING_PREFIX, TAG_VIDEO_ID
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore
from autoedit_dagster.schedules import (
    expired_work,
    retention_job,
    stale_staging,
    sweep_job,
    temp_sweep_sensor,
)
from tests.production.conftest import make_clip

ANALYSIS = ("source_video.json", "media_analysis.parquet", "speech_segments.parquet", "shots.parquet")
PROFILE_VALUES = ("edit_timeline.json", "render.json", "previews.json", "timeline_exports.json", "edit_report.json")
HOUR = 3600.0


def _finished(store: LocalMediaStore, video_id: str, when: datetime) -> None:
    store.write_bytes(f"uploads/{video_id}.mp4", b"upload")
    store.write_bytes(f"renders/{video_id}/tate/final.mp4", b"render")
    report = {"video_id": video_id, "profile": "tate", "finished_at": when.isoformat()}
    store.write_bytes(f"renders/{video_id}/tate/report.json", json.dumps(report).encode())
    for name in ANALYSIS:
        store.write_bytes(f"work/{video_id}/{name}", b"kept")
    for name in (*PROFILE_VALUES, "crop_path.parquet"):
        store.write_bytes(f"work/{video_id}/tate/{name}", b"value")


def _work(root: Path, video_id: str) -> set[str]:
    folder = root / "work" / video_id
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _run_in(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, tags: dict[str, str]) -> dg.DagsterRun:
    """A run record in `status`, with the code origin a queued run must name (as the UI's launch gives)."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "render")
    job = dg.GraphDefinition("render").to_job()
    return instance.create_run_for_job(job, status=status, tags=tags, remote_job_origin=origin)


def test_retention_keeps_the_analysis_and_skips_videos_in_flight(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    now = datetime.now(UTC)
    for video_id in ("old-00000001", "queued-00000003", "started-00000004"):
        _finished(store, video_id, now - timedelta(days=10))
    _finished(store, "new-00000002", now - timedelta(days=1))
    assert expired_work(store, timedelta(days=7), now) == {
        "old-00000001": ["tate"], "queued-00000003": ["tate"], "started-00000004": ["tate"],
    }  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    _run_in(instance, dg.DagsterRunStatus.QUEUED, {"dagster/partition": "queued-00000003"})
    _run_in(instance, dg.DagsterRunStatus.STARTED, {TAG_VIDEO_ID: "started-00000004"})

    result = retention_job.execute_in_process(resources={"store": store}, instance=instance)
    assert result.success
    everything = {*ANALYSIS, *(f"tate/{name}" for name in (*PROFILE_VALUES, "crop_path.parquet"))}
    # Only the per-frame table a profile run rebuilds goes; what a new profile loads stays.
    assert _work(tmp_path, "old-00000001") == everything - {"tate/crop_path.parquet"}
    for untouched in ("new-00000002", "queued-00000003", "started-00000004"):
        assert _work(tmp_path, untouched) == everything, untouched
    for video_id in ("old-00000001", "new-00000002"):
        assert (tmp_path / "uploads" / f"{video_id}.mp4").read_bytes() == b"upload"
        assert (tmp_path / "renders" / video_id / "tate" / "final.mp4").read_bytes() == b"render"


def test_retention_dry_run_deletes_nothing(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    _finished(store, "old-00000001", datetime.now(UTC) - timedelta(days=30))
    config = dg.RunConfig(ops={"delete_expired_work": {"config": {"dry_run": True}}})
    assert retention_job.execute_in_process(resources={"store": store}, run_config=config).success
    assert (tmp_path / "work" / "old-00000001" / "tate" / "crop_path.parquet").exists()


def test_a_new_profile_renders_after_retention(tmp_path: Path) -> None:
    """Retention keeps the analysis under work/<video_id>/: a backfill of a new profile still runs after it."""
    store = LocalMediaStore(root=str(tmp_path))
    (tmp_path / "uploads").mkdir()
    make_clip(tmp_path / "uploads" / "clip.mp4", seconds=2.0)
    video_id = video_id_for_upload("uploads/clip.mp4")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", [video_id])
    defs = build_definitions(store)

    def run(job: str) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(job).execute_in_process(partition_key=video_id, instance=instance)

    assert run("video_job").success
    config = dg.RunConfig(ops={"delete_expired_work": {"config": {"older_than_days": 0}}})
    retention = defs.resolve_job_def("retention_job").execute_in_process(instance=instance, run_config=config)
    assert retention.success
    assert not (tmp_path / "work" / video_id / "tate" / "crop_path.parquet").exists()
    # The deletion shows on the partition in the UI.
    observed = instance.fetch_observations(dg.AssetKey(["tate", "crop_path"]), limit=1).records
    assert observed and observed[0].partition_key == video_id

    square = run("square_job")
    assert square.success
    keys = {e.asset_key.to_user_string() for e in square.get_asset_materialization_events()}
    assert "square/render" in keys and "media_analysis" not in keys
    assert (tmp_path / "renders" / video_id / "square" / "final.mp4").stat().st_size > 0


# -------------------------------------------------------------------------------- temp sweeps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _aged(path: Path, seconds: float) -> Path:
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def _file(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    return _aged(path, age)


def test_store_sweep_deletes_only_old_temp_files_and_only_its_own_in_uploads(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    dead = _dead_pid()
    render = tmp_path / "renders" / "v-00000001" / "tate"
    old = [
        _file(render / ".autoedit-tmp-abc123.tmp", 2 * HOUR),
        _file(render / f".final.mp4.{dead}-0123abcd.part", 2 * HOUR),
        _file(tmp_path / "work" / "v-00000001" / ".autoedit-tmp-x.tmp", 2 * HOUR),
        _file(tmp_path / "uploads" / "team" / ".autoedit-tmp-upload.tmp", 2 * HOUR),  # an upload of ours, cut short
    ]
    kept = [
        _file(render / ".autoedit-tmp-young.tmp", 60),  # a write in progress
        _file(tmp_path / "uploads" / ".movie.mp4.part", 2 * HOUR),  # a producer's own partial upload
        _file(render / "final.mp4", 2 * HOUR),
    ]
    removed = store.sweep_temp_files(HOUR, time.time())
    assert sorted(removed) == sorted(p.relative_to(tmp_path).as_posix() for p in old)
    assert all(not p.exists() for p in old) and all(p.exists() for p in kept)


def test_engine_temp_folders_and_partials_of_live_processes_are_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getpid()
    folders = {name: tmp_path / name for name in (
        f"autoedit-render-{dead}-abc", f"autoedit-plan-{live}-def", f"autoedit-loudness-{dead}-young",
        "autoedit-render-legacy1", "unrelated-dir",
    )}  # fmt: skip
    for name, folder in folders.items():
        (folder / "graph.txt").parent.mkdir()
        (folder / "graph.txt").write_text("x")
        _aged(folder, 60 if "young" in name else 2 * HOUR)
    removed = tempfiles.sweep_temp_dirs(tmp_path, older_than=HOUR)
    assert sorted(p.name for p in removed) == sorted([f"autoedit-render-{dead}-abc", "autoedit-render-legacy1"])
    assert folders[f"autoedit-plan-{live}-def"].exists() and folders["unrelated-dir"].exists()

    live_part = _file(tmp_path / f".out.mp4.{live}-0123abcd.part", 2 * HOUR)
    dead_part = _file(tmp_path / f".out.mp4.{dead}-0123abcd.part", 2 * HOUR)
    assert tempfiles.sweep_partials(tmp_path, older_than=HOUR) == [dead_part]
    assert live_part.exists()


def test_a_render_sweeps_what_a_killed_render_left(tmp_path: Path) -> None:
    """kill -9 mid-render, then the next render into the same folder removes the leftovers."""
    make_clip(tmp_path / "in.mp4", seconds=2.0)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    command = [sys.executable, "-m", "autoedit_dagster.cli", "edit", "--profile", "yoko", "-o", "out/o.mp4", "in.mp4"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob(".o.mp4.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    leftovers = [*(tmp_path / "out").glob(".o.mp4.*.part"), *temp.glob("autoedit-*")]
    assert leftovers, "the killed render left nothing to sweep"
    for path in leftovers:
        _aged(path, 2 * HOUR)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in leftovers)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["o.mp4"]


def test_sweep_job_deletes_staging_of_ended_runs_only(tmp_path: Path) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    ended = _run_in(instance, dg.DagsterRunStatus.FAILURE, {}).run_id
    running = _run_in(instance, dg.DagsterRunStatus.STARTED, {}).run_id
    queued = _run_in(instance, dg.DagsterRunStatus.QUEUED, {}).run_id
    for run_id in (ended, running, queued, "unknown-run"):
        _file(tmp_path / STAGING_PREFIX / run_id / "v-00000001" / "tate" / "final.mp4", 0)
    # Not yet: the local store dates a file by its ctime too (a file moved in keeps its mtime).
    assert stale_staging(store, instance, HOUR, time.time()) == []
    assert stale_staging(store, instance, HOUR, time.time() + 2 * HOUR) == [
        f"{STAGING_PREFIX}{run_id}/" for run_id in sorted([ended, "unknown-run"])
    ]
    config = dg.RunConfig(ops={"sweep_temp_files": {"config": {"older_than_hours": 0}}})
    assert sweep_job.execute_in_process(resources={"store": store}, instance=instance, run_config=config).success
    assert {p.name for p in (tmp_path / STAGING_PREFIX).iterdir()} == {running, queued}


def test_sweep_sensor_runs_at_start_then_hourly() -> None:
    with dg.instance_for_test() as instance:
        request = temp_sweep_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == datetime.now(UTC).strftime("sweep-%Y%m%dT%H")


@pytest.mark.parametrize("key", ["uploads/a.mp4", "renders/v/tate/final.mp4"])
def test_single_deletes_refuse_uploads_and_renders(tmp_path: Path, key: str) -> None:
    store = LocalMediaStore(root=str(tmp_path))
    store.write_bytes(key, b"x")
    with pytest.raises(PermissionError):
        store.delete(key)
    assert store.exists(key)
