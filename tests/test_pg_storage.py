"""The PostgreSQL storage with kept connections, as deploy/dagster.yaml loads it, on the real server.

Each test gets a fresh database and the instance `DagsterInstance.get()` builds from the
production file. Connections opened are counted on the storages' own engines (SQLAlchemy's
`connect` event) and, where a test kills them, seen in `pg_stat_activity`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

from autoedit_dagster.pg_storage import POOL_SIZE, KeptEventLogStorage, KeptRunStorage, KeptScheduleStorage
from testsupport.services import PostgresDatabase, fresh_postgres_database, instance_on

PRODUCTION_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:Handling yaml-defined logging:dagster.BetaWarning")


@dg.asset(partitions_def=dg.StaticPartitionsDefinition([f"v{i}" for i in range(20)]))
def one() -> None:
    """A partitioned asset with a check: its runs plan a materialization and a check evaluation."""


@dg.asset_check(asset=one)
def one_is_there() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


JOB = dg.Definitions(
    assets=[one], asset_checks=[one_is_there], jobs=[dg.define_asset_job("one_job", [one])]
).resolve_job_def("one_job")


@pytest.fixture
def database() -> Iterator[PostgresDatabase]:
    with fresh_postgres_database() as db:
        yield db


@pytest.fixture
def instance(database: PostgresDatabase, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with instance_on(database, PRODUCTION_YAML, tmp_path) as instance:
        yield instance


def storages(instance: dg.DagsterInstance) -> list:
    return [instance.run_storage, instance.event_log_storage, instance.schedule_storage]


def count_connects(instance: dg.DagsterInstance) -> list[int]:
    opened = [0]

    def connected(*_: object) -> None:
        opened[0] += 1

    for engine in {id(s._engine): s._engine for s in storages(instance)}.values():
        event.listen(engine, "connect", connected)
    return opened


def create_runs(instance: dg.DagsterInstance, partitions: range) -> None:
    for i in partitions:
        run = instance.create_run_for_job(JOB, tags={"dagster/partition": f"v{i}"})
        assert instance.get_run_by_id(run.run_id) is not None


def backends(database: PostgresDatabase) -> list[int]:
    """Backend pids connected to `database`, other than the one asking."""
    with contextlib.closing(psycopg2.connect(database.url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database.database,)
        )
        return [row[0] for row in cur.fetchall()]


def test_every_storage_uses_the_processs_pool(instance: dg.DagsterInstance) -> None:
    assert [type(s) for s in storages(instance)] == [KeptRunStorage, KeptEventLogStorage, KeptScheduleStorage]
    (engine,) = {s._engine for s in storages(instance)}
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == POOL_SIZE
    assert engine.pool._pre_ping


def test_runs_are_created_on_a_few_connections(instance: dg.DagsterInstance) -> None:
    """Ten runs write ~40 rows (created, planned materialization and check); NullPool opened one per group."""
    opened = count_connects(instance)
    create_runs(instance, range(10))
    planned = instance.get_records_for_run(
        instance.get_runs(limit=1)[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assert len(planned) == 1
    assert len(instance.get_runs()) == 10
    assert 1 <= opened[0] <= POOL_SIZE


def test_a_killed_connection_is_replaced_before_use(instance: dg.DagsterInstance, database: PostgresDatabase) -> None:
    """A database restart (here: every backend of ours terminated) costs a reconnect, not a failed write."""
    create_runs(instance, range(2))
    killed = backends(database)
    assert killed
    with contextlib.closing(psycopg2.connect(database.url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (killed,))
    opened = count_connects(instance)
    create_runs(instance, range(2, 4))
    assert len(instance.get_runs()) == 4
    assert opened[0] >= 1
    assert not set(killed) & set(backends(database))


_child_instance: dg.DagsterInstance


def _create_one_run_and_close() -> None:
    # The parent's instance, inherited by the fork; closing what it holds is what a child's normal
    # exit does (its connections are closed as they are collected).
    create_runs(_child_instance, range(5, 6))
    for storage in storages(_child_instance):
        storage._engine.dispose()


def test_a_forked_child_leaves_the_parents_connections_alone(instance: dg.DagsterInstance) -> None:
    """The child opens its own and closes them; the parent's kept ones still work, with no reconnect."""
    global _child_instance
    create_runs(instance, range(2))
    _child_instance = instance
    opened = count_connects(instance)
    child = multiprocessing.get_context("fork").Process(target=_create_one_run_and_close)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    create_runs(instance, range(2, 4))
    assert len(instance.get_runs()) == 5
    assert opened[0] == 0


def test_instances_never_disposed_share_the_processs_connections(
    instance: dg.DagsterInstance, database: PostgresDatabase
) -> None:
    """A Celery worker builds an instance per step and never disposes it: the connections stay bounded."""
    others = [dg.DagsterInstance.get() for _ in range(5)]  # the same DAGSTER_HOME and database
    for i, other in enumerate(others):
        create_runs(other, range(i, i + 1))
        other.all_instigator_state()
    assert len(instance.get_runs()) == 5
    assert 1 <= len(backends(database)) <= POOL_SIZE


def test_a_disposed_instance_leaves_the_others_connected(instance: dg.DagsterInstance) -> None:
    create_runs(instance, range(1))
    other = dg.DagsterInstance.get()
    opened = count_connects(instance)
    other.dispose()
    create_runs(instance, range(1, 3))
    assert len(instance.get_runs()) == 3
    assert opened[0] == 0
