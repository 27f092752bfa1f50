"""A render run killed with its code server is failed and its `render` slot freed by run monitoring.

Each instance file (deploy/dagster.local.yaml on SQLite, deploy/dagster.yaml on a fresh PostgreSQL
database) is copied into a DAGSTER_HOME with only its timings shortened (a 1 s poll, slots freed
1 s after a run ends) and the pool limited to one slot. `dagster-daemon run` serves a code
location whose sensor starts two renders; one takes the slot, the other waits for it. The test
then kill -9s the slot holder's process and its code server (a lost container or machine: nobody
is left to report the death), and expects the run FAILURE, its slot freed and the waiting render
running, within the configured time. With Dagster's DefaultRunLauncher the run stays STARTED and
the slot stays taken for ever (the launcher has no worker health check).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG

from autoedit_dagster.assets.profile_assets import RENDER_POOL
from autoedit_dagster.engine.tempfiles import process_alive
from tests.production.conftest import free_port
from testsupport.services import fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Short timings for the test; what the files set is checked against the same bound below.
POLL_S, FREE_AFTER_S = 1, 1

pytestmark = pytest.mark.filterwarnings("ignore:Handling yaml-defined logging:dagster.BetaWarning")


def instance_yaml(source: Path) -> dict:
    config = yaml.safe_load(source.read_text())
    config["run_monitoring"].update(poll_interval_seconds=POLL_S, free_slots_after_run_end_seconds=FREE_AFTER_S)
    config["concurrency"]["pools"]["default_limit"] = 1
    return config


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A Dagster process of the test's own, in a session of its own (so it can be killed whole)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def code_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The code location as production runs it: a gRPC server of its own (deploy/workspace.yaml)."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "api", "grpc", "-m", "tests.deploy.monitoring_defs", "-h", "127.0.0.1", "-p", str(port)]
    return start(command, env, log)


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{log.read_text()[-3000:]}")


@pytest.fixture(params=["local", "production"])
def configured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """(name, DAGSTER_HOME, extra environment) for one deploy instance file."""
    home = tmp_path / "home"
    home.mkdir()
    if request.param == "local":
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(DEPLOY / "dagster.local.yaml")))
        yield request.param, home, {}
        return
    with fresh_postgres_database() as database:
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(DEPLOY / "dagster.yaml")))
        yield request.param, home, database.env()


@pytest.mark.parametrize("source", ["dagster.local.yaml", "dagster.yaml"])
def test_deploy_files_free_a_dead_render_slot_within_a_bound(source: str) -> None:
    """The health-checking launcher is configured, and the worst case stays short (not Dagster's 120 s poll)."""
    config = yaml.safe_load((DEPLOY / source).read_text())
    assert config["run_launcher"] == {"module": "autoedit_dagster.run_launcher", "class": "MonitoredRunLauncher"}
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    worst = 2 * monitoring["poll_interval_seconds"] + monitoring["free_slots_after_run_end_seconds"]
    assert worst <= 90


def test_killed_render_is_failed_and_its_slot_goes_to_the_next_render(
    configured: tuple[str, Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, home, extra = configured
    marks = tmp_path / "marks"
    marks.mkdir()
    log = home / "processes.log"
    port = free_port()
    (home / "workspace.yaml").write_text(
        yaml.safe_dump({"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": "test"}}]})
    )
    env = {**extra, "DAGSTER_HOME": str(home), "AUTOEDIT_TEST_MARKS": str(marks), "PYTHONPATH": str(REPO)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    daemon_binary = str(Path(sys.executable).with_name("dagster-daemon"))
    processes: list[subprocess.Popen] = []
    # The instance first: it creates the SQLite schemas, which processes starting together race on.
    with dg.DagsterInstance.get() as instance:
        processes += [
            code_server(port, env, log),
            start([daemon_binary, "run", "-w", str(home / "workspace.yaml")], env, log),
        ]
        try:

            def one_renders_one_queued() -> Path | None:
                # The run queue holds a run while its pool is full (granularity op, 1.13).
                queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
                holders = list(marks.iterdir())
                return holders[0] if len(queued) == 1 and len(holders) == 1 else None

            first = wait_for(one_renders_one_queued, 120, f"{name}: one render holding the slot, one queued", log)
            # The machine or container is lost: the run worker and its code server die together;
            # the code server comes back at the same address (as docker's or k8s' restart does).
            stop(processes[0])
            # SIGKILL is delivered at once but the worker may take a moment to be gone from the table.
            worker = int(first.read_text())
            wait_for(lambda: not process_alive(worker, time.time()), 10, f"{name}: the run worker gone", log)
            killed_at = time.monotonic()
            processes[0] = code_server(port, env, log)

            def failed() -> bool:
                run = instance.get_run_by_id(first.name)
                return run is not None and run.status == dg.DagsterRunStatus.FAILURE

            wait_for(failed, 30, f"{name}: the killed run to be marked failed", log)
            failed_at = time.monotonic()
            second = wait_for(
                lambda: next((p for p in marks.iterdir() if p.name != first.name), None),
                30,
                f"{name}: the queued render to get the slot",
                log,
            )
            started_at = time.monotonic()
            info = instance.event_log_storage.get_concurrency_info(RENDER_POOL)
            assert {slot.run_id for slot in info.claimed_slots} == {second.name}
            assert instance.get_run_by_id(second.name).status == dg.DagsterRunStatus.STARTED
        finally:
            for proc in processes:
                stop(proc)
    print(
        f"{name}: failed {failed_at - killed_at:.1f} s after the kill, next render {started_at - failed_at:.1f} s later"
    )
    # The code server's restart (seconds on a loaded machine) and one poll.
    assert failed_at - killed_at < 30
    # Slots freed FREE_AFTER_S after the run ended, found by the next poll; the queue's next
    # dequeue (every 2 s) then starts a run worker process, which takes 5-15 s to import on a
    # loaded two-core machine (measured: 8-14 s).
    assert started_at - failed_at < FREE_AFTER_S + 2 * POLL_S + 2 + 20


@pytest.mark.parametrize("alive", [True, False])
def test_a_gone_local_code_server_is_judged_by_its_worker_pid(tmp_path: Path, alive: bool) -> None:
    """The daemon's own code server (a unix socket, `dagster dev`) is gone: the worker's pid decides."""
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        if not alive:
            worker.kill()
            worker.wait()
        config = {"run_launcher": {"module": "autoedit_dagster.run_launcher", "class": "MonitoredRunLauncher"}}
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(), run_id=None)
            grpc_info = json.dumps({"host": "localhost", "socket": str(tmp_path / "gone.sock")})
            instance.add_run_tags(run.run_id, {GRPC_INFO_TAG: grpc_info})
            instance.report_engine_event(
                f"Started process for run (pid: {worker.pid}).", run, EngineEventData.in_process(worker.pid)
            )
            health = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
    finally:
        worker.kill()
        worker.wait()
    assert health.status.value == ("RUNNING" if alive else "FAILED"), health
