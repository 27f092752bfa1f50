"""The code location loads, and its jobs, sensors and schedules resolve."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from autoedit_dagster import names
from autoedit_dagster.definitions import build_definitions, defs
from autoedit_dagster.resources import LocalMediaStore

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_resolve(tmp_path: Path) -> None:
    local = build_definitions(LocalMediaStore(root=str(tmp_path)))
    for job in ("video_job", "square_job", "yoko_job", "catalog_job", "retention_job"):
        assert local.resolve_job_def(job) is not None
    assert local.resolve_sensor_def("upload_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert local.resolve_sensor_def("quarantine_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert local.resolve_schedule_def("nightly_catalog").cron_schedule == "0 2 * * *"
    assert local.resolve_schedule_def("weekly_retention").cron_schedule == "0 3 * * 0"
    graph = local.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for profile in ("tate", "square", "yoko"):
        assert f"{profile}/render" in keys and f"{profile}/edit_report" in keys
    assert "square/crop_path" in keys and "yoko/crop_path" not in keys
    # Renders share one concurrency pool, so a backfill cannot start every render at once.
    assert graph.get(dg.AssetKey(["tate", "render"])).pools == {"render"}


def test_video_job_targets_ingest_analysis_and_tate() -> None:
    job = defs.resolve_job_def("video_job")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"source_video", "media_analysis", "tate/render"} <= selected
    assert not any(k.startswith(("square/", "yoko/")) for k in selected)


def test_each_backfill_choice_is_one_job_of_exactly_its_groups() -> None:
    """`autoedit backfill --profile P [--with-analysis]` is a job backfill of one job: exactly P's group
    (and ingest + analysis with it), each run tagged for the render limit; the sensor's job is one of them."""
    graph = defs.resolve_asset_graph()
    assert names.backfill_job_name(names.DEFAULT_PROFILE, with_analysis=True) == names.VIDEO_JOB
    for profile in names.PROFILE_NAMES:
        for with_analysis in (False, True):
            job = defs.resolve_job_def(names.backfill_job_name(profile, with_analysis))
            groups = {profile, *(names.ANALYSIS_GROUPS if with_analysis else ())}
            wanted = {key for key in graph.materializable_asset_keys if graph.get(key).group_name in groups}
            assert set(job.asset_layer.selected_asset_keys) == wanted, job.name
            assert job.tags == names.RENDER_RUN_TAGS
            assert job.partitions_def is not None and job.partitions_def.name == "videos"


def test_backfills_run_one_video_per_run() -> None:
    graph = defs.resolve_asset_graph()
    policy = graph.get(dg.AssetKey("media_analysis")).backfill_policy
    assert policy is not None and policy.max_partitions_per_run == 1


def test_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "AUTOEDIT_STORAGE": str(tmp_path / "storage")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_video_job_run_is_created_with_one_planned_event_per_asset_and_check(tmp_path: Path) -> None:
    """What creating one run writes (a backfill of 10,000 videos writes it 10,000 times before any
    run starts; bench/BACKFILL_RATE.md): a planned event per asset and per render check, no more."""
    job = defs.resolve_job_def("video_job")
    assets = job.asset_layer.selected_asset_keys
    checks = job.asset_layer.asset_graph.asset_check_keys
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("videos", ["clip-0000000000000000"])
        run = instance.create_run_for_job(job, tags={"dagster/partition": "clip-0000000000000000"})
        events = [e.dagster_event_type for e in instance.all_logs(run.run_id)]
    assert events.count(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED) == len(assets) == 10
    assert events.count(dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED) == len(checks) == 5
    assert len(events) == 15
