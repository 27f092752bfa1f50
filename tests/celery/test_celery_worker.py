"""The per-video job on the Celery executor: a real Redis broker, real worker processes, PostgreSQL.

Workers are started the way operators start them (`dagster-celery worker start -A
dagster_celery.app -y celery.yaml -q <queues>`): `general` on the default `dagster` queue and
`render` on `autoedit-render` only, so the worker that ran a step shows which queue the step was
sent to; a third, `both`, started for the two queues at once, only checks that form and stops
before any run. Runs are launched by `dagster job execute` in a process of their own, with
AUTOEDIT_EXECUTOR=celery, like a run worker in production.

Why PostgreSQL and not SQLite: a Celery task opens the instance from the run's instance ref and
writes the step's events itself, so the run storage must be reachable from every worker (a SQLite
file is only on one machine) and take writes from the run process and the worker pool at once.
That is the production set-up (deploy/), so the test uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_celery.make_app import make_app

from autoedit_dagster.definitions import defs as autoedit_defs
from autoedit_dagster.executors import CELERY_EXECUTOR_CONFIG, CELERY_QUEUE_TAG, DEFAULT_QUEUE, RENDER_QUEUE
from autoedit_dagster.partitions import video_id_for_upload
from tests.celery import routing_defs
from testsupport.media_factory import ffmpeg
from testsupport.services import PostgresDatabase

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
UPLOAD = "uploads/clip.mp4"
# One `-q` with a comma-separated list: Celery 5's `-Q` takes a list and keeps only the last of
# several, so `dagster-celery worker start -q dagster -q autoedit-render` listens on autoedit-render only.
WORKER_QUEUES = {"general": DEFAULT_QUEUE, "render": RENDER_QUEUE, "both": f"{DEFAULT_QUEUE},{RENDER_QUEUE}"}
READY_TIMEOUT_S = 60
RUN_TIMEOUT_S = 150
STOP_TIMEOUT_S = 30
SUBMITTED = re.compile(r'Submitting celery task for step "(?P<step>[^"]+)" to queue "(?P<queue>[^"]+)"')

# Dagster instance storage in PostgreSQL, from the libpq variables (psycopg2 named explicitly:
# SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which is not installed).
INSTANCE_YAML = """\
storage:
  postgres:
    postgres_db:
      hostname: {env: PGHOST}
      port: {env: PGPORT}
      username: {env: PGUSER}
      password: {env: PGPASSWORD}
      db_name: {env: PGDATABASE}
      scheme: postgresql+psycopg2
telemetry:
  enabled: false
"""


@dataclass
class Worker:
    prefix: str
    queue: str
    process: subprocess.Popen
    log: Path
    node: str = ""  # the Celery node name, e.g. general-1a2b3c@host
    pid: int | None = None  # the Celery main process (the wrapper's child)
    pool: frozenset[int] = frozenset()  # its prefork pool processes
    queues: list[str] = field(default_factory=list)
    returncode: int | None = None


@dataclass
class Run:
    status: dg.DagsterRunStatus
    events: list[dg.DagsterEvent]
    seconds: float
    output: str

    def pid_of(self, event_type: dg.DagsterEventType) -> dict[str | None, int | None]:
        return {e.step_key: e.pid for e in self.events if e.event_type == event_type}

    @property
    def run_pid(self) -> int | None:
        return self.pid_of(dg.DagsterEventType.RUN_START)[None]

    @property
    def step_pids(self) -> dict[str, int | None]:
        return {k: pid for k, pid in self.pid_of(dg.DagsterEventType.STEP_START).items() if k}

    @property
    def submitted_to(self) -> dict[str, str]:
        """Step key -> the queue the run process sent it to (dagster_celery's engine event)."""
        matches = (SUBMITTED.search(e.message or "") for e in self.events if e.is_engine_event)
        return {m["step"]: m["queue"] for m in matches if m}

    @property
    def executed_by(self) -> dict[str, str]:
        """Step key -> the Celery node that ran it (recorded by the task inside the worker)."""
        return {
            e.step_key: e.engine_event_data.metadata["Celery worker"].value
            for e in self.events
            if e.is_engine_event and e.step_key and "Celery worker" in e.engine_event_data.metadata
        }


@dataclass
class Cluster:
    store: Path
    video_id: str
    workers: dict[str, Worker]
    runs: dict[str, Run]

    def worker_on(self, node: str) -> Worker:
        return next(w for w in self.workers.values() if w.node == node)


def start_worker(prefix: str, queue: str, config: Path, env: dict[str, str], logs: Path) -> Worker:
    """`dagster-celery worker start`, in a session of its own so nothing outlives the test."""
    exe = shutil.which("dagster-celery", path=env["PATH"])
    assert exe, "dagster-celery is not on PATH"
    log = logs / f"{prefix}.log"
    command = [exe, "worker", "start", "-A", "dagster_celery.app", "-y", str(config), "-q", queue, "-n", prefix,
               "--", "--concurrency=1"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Worker(prefix, queue, process, log)


def wait_until_ready(app, workers: list[Worker]) -> None:
    """Ping the workers over the broker until all answer, then record their pids and queues."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"worker {worker.prefix} exited ({worker.process.returncode}):\n{worker.log.read_text()}")
        nodes = {name for reply in app.control.ping(timeout=1.0) for name in reply}
        for worker in workers:
            worker.node = next((n for n in nodes if n.startswith(f"{worker.prefix}@")), "")
        if all(w.node for w in workers):
            break
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.prefix}\n{w.log.read_text()}" for w in workers)
            pytest.fail(f"Celery workers not ready after {READY_TIMEOUT_S} s:\n{logs}")
    inspect = app.control.inspect(destination=[w.node for w in workers], timeout=5.0)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    for worker in workers:
        worker.pid = stats[worker.node]["pid"]
        worker.pool = frozenset(stats[worker.node]["pool"]["processes"])
        worker.queues = sorted(q["name"] for q in queues[worker.node])


def stop_worker(worker: Worker) -> None:
    """SIGTERM to the Celery main process: a warm shutdown, after which the wrapper exits."""
    if worker.process.poll() is None:
        if worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
        else:
            os.killpg(worker.process.pid, signal.SIGTERM)
        # On a timeout returncode stays None: the test reports it, the fixture's finally kills it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(STOP_TIMEOUT_S)
    worker.returncode = worker.process.poll()


def kill_worker(worker: Worker) -> None:
    """Last resort (finally): SIGKILL whatever is left of the worker's session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)


def launch(env: dict[str, str], module: str, job: str, tags: dict | None = None) -> subprocess.Popen:
    """`dagster job execute` in a process of its own: the run process, as a run worker would be."""
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", module, "-a", "defs", "-j", job]
    if tags:
        command += ["--tags", json.dumps(tags)]
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(instance: dg.DagsterInstance, process: subprocess.Popen, job: str, started: float) -> Run:
    """Wait for the run process, then read its run and events from the instance."""
    try:
        output, _ = process.communicate(timeout=max(1.0, started + RUN_TIMEOUT_S - time.perf_counter()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    seconds = time.perf_counter() - started
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
    assert len(runs) == 1, f"expected one {job} run:\n{output[-5000:]}"
    events = [entry.dagster_event for entry in instance.all_logs(runs[0].run_id) if entry.dagster_event]
    return Run(runs[0].status, events, seconds, output[-5000:])


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_database: PostgresDatabase, redis_url: str
) -> Iterator[Cluster]:
    """Start the workers, run `routing_job` and `video_job` through them, stop them; yield what happened."""
    tmp = tmp_path_factory.mktemp("celery")
    home, store = tmp / "dagster_home", tmp / "store"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    (store / "uploads").mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           str(store / UPLOAD))  # fmt: skip
    # The worker's -y file: the same executor config block the jobs use (env references).
    config = tmp / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": dict(CELERY_EXECUTOR_CONFIG)}}))
    env = {
        **os.environ,
        **postgres_database.env(),
        "DAGSTER_HOME": str(home),
        "AUTOEDIT_STORAGE": str(store),
        "AUTOEDIT_EXECUTOR": "celery",
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        # The interpreter's bin first (dagster-celery runs `celery` from PATH); the repo for tests.celery.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    video_id = video_id_for_upload(UPLOAD)
    suffix = uuid.uuid4().hex[:6]
    app = make_app({"broker": redis_url, "backend": redis_url})
    workers: dict[str, Worker] = {}
    processes: dict[str, subprocess.Popen] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in postgres_database.env().items():
            mp.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("videos", [video_id])
            try:
                for name, queue in WORKER_QUEUES.items():
                    workers[name] = start_worker(f"{name}-{suffix}", queue, config, env, tmp)
                wait_until_ready(app, list(workers.values()))
                stop_worker(workers["both"])  # it must not take steps from the other two
                # Both runs at once: the workers serve any run that feeds their queues.
                started = time.perf_counter()
                processes["routing_job"] = launch(env, routing_defs.__name__, "routing_job")
                processes["video_job"] = launch(
                    env, "autoedit_dagster.definitions", "video_job", {"dagster/partition": video_id}
                )
                runs = {job: finish(instance, process, job, started) for job, process in processes.items()}
                for worker in workers.values():
                    stop_worker(worker)
                yield Cluster(store, video_id, workers, runs)
            finally:
                for process in processes.values():
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(10)
                for worker in workers.values():
                    kill_worker(worker)
                app.close()


def expected_queues(defs: dg.Definitions, job: str) -> dict[str, str]:
    """Step key -> the queue its op tags name (dagster_celery's rule), from the job definition."""
    return {node.name: node.tags.get(CELERY_QUEUE_TAG, DEFAULT_QUEUE) for node in defs.resolve_job_def(job).graph.nodes}


def test_workers_listen_on_the_queues_they_were_started_with(cluster: Cluster) -> None:
    """A worker listens on every queue of its one comma list (`-q dagster -q autoedit-render` drops `dagster`)."""
    assert {name: w.queues for name, w in cluster.workers.items()} == {
        "general": [DEFAULT_QUEUE],
        "render": [RENDER_QUEUE],
        "both": sorted([DEFAULT_QUEUE, RENDER_QUEUE]),
    }


def test_video_job_succeeds_on_celery_workers(cluster: Cluster) -> None:
    run = cluster.runs["video_job"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.output
    renders = cluster.store / "renders" / cluster.video_id / "tate"
    assert (renders / "final.mp4").stat().st_size > 0
    assert (cluster.store / "work" / cluster.video_id / "media_analysis.parquet").exists()


def test_every_step_ran_in_a_worker_process_not_the_run_process(cluster: Cluster) -> None:
    pools = cluster.workers["general"].pool | cluster.workers["render"].pool
    for job, defs in (("video_job", autoedit_defs), ("routing_job", routing_defs.defs)):
        run = cluster.runs[job]
        steps = set(expected_queues(defs, job))
        assert set(run.step_pids) == steps, job
        assert run.run_pid is not None
        for step, pid in run.step_pids.items():
            assert pid != run.run_pid, (job, step)
            assert pid in pools, (job, step, pid, pools)
        assert set(run.executed_by) == steps
        assert set(run.executed_by.values()) <= {cluster.workers["general"].node, cluster.workers["render"].node}


def test_each_step_went_to_the_queue_its_tag_names_and_a_worker_on_that_queue_ran_it(cluster: Cluster) -> None:
    for job, defs in (("video_job", autoedit_defs), ("routing_job", routing_defs.defs)):
        run = cluster.runs[job]
        assert run.submitted_to == expected_queues(defs, job), job
        for step, node in run.executed_by.items():
            assert cluster.worker_on(node).queue == run.submitted_to[step], (job, step, node)


def test_render_queue_steps_run_on_the_dedicated_render_worker(cluster: Cluster) -> None:
    run = cluster.runs["routing_job"]
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.output
    assert run.submitted_to == {"prepared": DEFAULT_QUEUE, "rendered": RENDER_QUEUE}
    assert run.executed_by == {
        "prepared": cluster.workers["general"].node,
        "rendered": cluster.workers["render"].node,
    }
    assert run.step_pids["rendered"] in cluster.workers["render"].pool


def test_workers_stop_cleanly_on_sigterm(cluster: Cluster) -> None:
    for name, worker in cluster.workers.items():
        assert worker.returncode == 0, (name, worker.log.read_text()[-3000:])
        assert "Warm shutdown" in worker.log.read_text(), name
