"""deploy/dagster.yaml as an operator uses it: copied into a DAGSTER_HOME, PG* exported, nothing else.

The instance is loaded with `DagsterInstance.get()` against the real PostgreSQL server (a fresh
database per session, `postgres_database`), and the per-video job runs on it in process; the run,
its events and its materializations are then read back both through the instance and with plain
SQL, so they are known to be in PostgreSQL and not in some local file.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.gateway.logs import LogFormatter
from autoedit_dagster.jobs import RENDER_RUN_TAGS
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore
from testsupport.media_factory import ffmpeg
from testsupport.services import PostgresDatabase, instance_on

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PRODUCTION_YAML = DEPLOY / "dagster.yaml"
LOCAL_YAML = DEPLOY / "dagster.local.yaml"
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")

# deploy/dagster.yaml configures JSON log handlers on purpose (`python_logs.dagster_handler_config`).
pytestmark = pytest.mark.filterwarnings("ignore:Handling yaml-defined logging:dagster.BetaWarning")


def production_config() -> dict:
    return yaml.safe_load(PRODUCTION_YAML.read_text())


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    return home


@pytest.fixture(scope="module")
def pg_instance(dagster_home: Path, postgres_database: PostgresDatabase) -> Iterator[dg.DagsterInstance]:
    """`DagsterInstance.get()` with only DAGSTER_HOME and the libpq variables set."""
    with instance_on(postgres_database, PRODUCTION_YAML, dagster_home) as instance:
        yield instance


@dataclass
class FinishedRun:
    video_id: str
    result: dg.ExecuteInProcessResult
    stdout: str


@pytest.fixture(scope="module")
def finished(pg_instance: dg.DagsterInstance, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The per-video job on a 2 s generated clip, run in process on the Postgres instance."""
    root = tmp_path_factory.mktemp("store")
    (root / "uploads").mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=2", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(root / "uploads" / "clip.mp4"))  # fmt: skip
    video_id = video_id_for_upload("uploads/clip.mp4")
    pg_instance.add_dynamic_partitions("videos", [video_id])
    job = build_definitions(LocalMediaStore(root=str(root))).resolve_job_def("video_job")
    out = io.StringIO()
    # The JSON handler's `ext://sys.stdout` is resolved when the run's log manager is built.
    with contextlib.redirect_stdout(out):
        result = job.execute_in_process(instance=pg_instance, partition_key=video_id, raise_on_error=False)
    return FinishedRun(video_id, result, out.getvalue())


def sql(database: PostgresDatabase, query: str, *args: object) -> list[tuple]:
    """Rows of `query`, read over a connection of our own (not the instance's)."""
    with contextlib.closing(psycopg2.connect(database.url)) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_storages_are_postgres(pg_instance: dg.DagsterInstance, postgres_database: PostgresDatabase) -> None:
    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    tables = {row[0] for row in sql(postgres_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs", "job_ticks", "dynamic_partitions", "concurrency_limits"} <= tables


def test_run_queue_and_pool_limits_are_as_configured(pg_instance: dg.DagsterInstance) -> None:
    config = production_config()["concurrency"]
    assert isinstance(pg_instance.run_coordinator, dg.QueuedRunCoordinator)
    concurrency = pg_instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == config["runs"]["max_concurrent_runs"] > 0
    assert [dict(limit) for limit in queue.tag_concurrency_limits] == config["runs"]["tag_concurrency_limits"]
    render_limits = [
        limit["limit"] for limit in queue.tag_concurrency_limits
        if (limit["key"], limit.get("value")) == next(iter(RENDER_RUN_TAGS.items()))
    ]  # fmt: skip
    assert render_limits and 0 < render_limits[0] < queue.max_concurrent_runs
    assert concurrency.pool_config.default_pool_limit == config["pools"]["default_limit"]
    assert concurrency.pool_config.pool_granularity.value == "op"


def test_daemon_scheduler_json_logs_and_no_telemetry(pg_instance: dg.DagsterInstance) -> None:
    assert type(pg_instance.scheduler).__name__ == "DagsterDaemonScheduler"
    assert pg_instance.scheduler.max_catchup_runs == 1
    assert not pg_instance.telemetry_enabled
    assert pg_instance.python_log_level == "INFO"
    formatters = [h.formatter for h in pg_instance.get_handlers() if h.formatter is not None]
    assert any(isinstance(f, LogFormatter) for f in formatters)


def test_missing_libpq_variable_is_named(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset PGPASSWORD must fail loudly with its name, not fall back to another database."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    for name in PG_VARIABLES:
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(Exception, match="PGPASSWORD"):
        dg.DagsterInstance.get()


def test_video_job_run_is_stored_in_postgres(
    finished: FinishedRun, pg_instance: dg.DagsterInstance, postgres_database: PostgresDatabase
) -> None:
    result = finished.result
    assert result.success
    records = pg_instance.get_run_records(dg.RunsFilter(run_ids=[result.run_id]))
    assert len(records) == 1
    run = records[0].dagster_run
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.job_name == "video_job"
    assert run.tags["dagster/partition"] == finished.video_id
    assert run.tags.items() >= RENDER_RUN_TAGS.items()
    rows = sql(postgres_database, "SELECT status, partition FROM runs WHERE run_id = %s", result.run_id)
    assert rows == [("SUCCESS", finished.video_id)]
    assert finished.video_id in pg_instance.get_dynamic_partitions("videos")


def test_materializations_are_stored_in_postgres(
    finished: FinishedRun, pg_instance: dg.DagsterInstance, postgres_database: PostgresDatabase
) -> None:
    events = finished.result.get_asset_materialization_events()
    keys = {event.asset_key for event in events}
    assert {dg.AssetKey("source_video"), dg.AssetKey("media_analysis"), dg.AssetKey(["tate", "render"])} <= keys
    for key in keys:
        latest = pg_instance.get_latest_materialization_event(key)
        assert latest is not None, key
        assert latest.run_id == finished.result.run_id
        assert latest.dagster_event is not None and latest.dagster_event.partition == finished.video_id
    [(count,)] = sql(
        postgres_database,
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        finished.result.run_id,
    )
    assert count == len(events)


def test_render_step_took_a_slot_of_the_render_pool(finished: FinishedRun, pg_instance: dg.DagsterInstance) -> None:
    """The render pool was created in Postgres with the configured default limit, and released."""
    assert finished.result.success
    info = pg_instance.event_log_storage.get_concurrency_info("render")
    assert info.slot_count == production_config()["concurrency"]["pools"]["default_limit"]
    assert info.active_slot_count == 0


def test_run_logs_are_json_lines_with_run_and_step(finished: FinishedRun) -> None:
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    assert lines, finished.stdout[:500]
    dagster_lines = [line for line in lines if line.get("run_id")]
    assert {line["run_id"] for line in dagster_lines} == {finished.result.run_id}
    step_events = {(line["step"], line.get("event")) for line in dagster_lines if line["step"]}
    assert ("tate__render", "STEP_SUCCESS") in step_events
    assert ("source_video", "ASSET_MATERIALIZATION") in step_events
    assert all({"time", "level", "message", "run_id", "video_id", "step"} <= line.keys() for line in lines)
    assert {line["video_id"] for line in dagster_lines} == {finished.video_id}


def test_local_and_production_instances_have_the_same_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/dagster.local.yaml (SQLite) and deploy/dagster.yaml differ in storage and limits only."""
    local = yaml.safe_load(LOCAL_YAML.read_text())
    production = production_config()
    assert set(local) - {"storage"} <= set(production)
    assert set(local["storage"]) == {"sqlite"}
    assert production["storage"]["custom"]["class"] == "PooledPostgresStorage"  # postgres, connections kept
    assert local["concurrency"]["pools"]["granularity"] == production["concurrency"]["pools"]["granularity"]
    assert set(local["run_monitoring"]) <= set(production["run_monitoring"])
    assert local["telemetry"] == production["telemetry"] == {"enabled": False}
    # Tick rows (the upload sensor's every 10 s) are purged on both, as the Helm chart does.
    assert local["retention"] == production["retention"]
    assert production["retention"]["sensor"]["purge_after_days"]["skipped"] == 7
    # Job backfills create their runs in threads on both (bench/BACKFILL_RATE.md).
    assert local["backfills"] == production["backfills"]
    assert production["backfills"]["num_submit_workers"] >= 2
    # The local file is a valid instance too (validated by loading it, on a throwaway home).
    shutil.copy(LOCAL_YAML, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        skipped = next(days for status, days in instance.get_tick_retention_settings(InstigatorType.SENSOR).items()
                       if status.value == "SKIPPED")  # fmt: skip
        assert skipped == 7
        assert instance.get_settings("backfills")["num_submit_workers"] == local["backfills"]["num_submit_workers"]
