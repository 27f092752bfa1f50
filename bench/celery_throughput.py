"""`python -m bench.celery_throughput`: videos per hour, Celery workers vs the embedded default; writes bench/CELERY.md.

The same 20 short clips (5-10 s, 640x360, lavfi testsrc2 + sine) go through `video_job` twice,
each time into a fresh local store and fresh instances:

- **embedded**: SQLite instance (the `make demo` storage), the default in-process executor, runs
  launched as `dagster job execute` processes, BENCH_EMBEDDED_RUNS at a time (default 2, the
  local run queue's limit in deploy/dagster.local.yaml);
- **celery**: PostgreSQL instance, AUTOEDIT_EXECUTOR=celery on Redis, 2 workers started with
  `dagster-celery worker start -q dagster,autoedit-render` (concurrency 1 each), BENCH_CELERY_RUNS
  runs in flight (default 4: a run process only waits on its steps, and a video's steps form a
  chain, so 2 workers need more than 2 runs to stay busy).

Neither side sets pool limits. Throughput is succeeded clips / wall time from the first launch to
the last run's end. Environment: BENCH_CLIPS (default 20), BENCH_EMBEDDED_RUNS, BENCH_CELERY_RUNS,
BENCH_INSTANCE_PER_CLIP (1: each clip gets an instance of its own, a SQLite home or a PostgreSQL
database, so that no instance holds more than one `videos` partition; default 0, one instance per
mode), BENCH_REDIS_URL (default redis://127.0.0.1:6379/8, flushed), BENCH_PGHOST/BENCH_PGPORT/
BENCH_PGUSER (default 127.0.0.1:5432, postgres; databases are created and dropped).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import yaml

from autoedit_dagster.executors import CELERY_EXECUTOR_CONFIG, DEFAULT_QUEUE, RENDER_QUEUE
from autoedit_dagster.partitions import video_id_for_upload
from testsupport.servers import make_clip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORT = HERE / "CELERY.md"
CLIPS = int(os.environ.get("BENCH_CLIPS", "20"))
EMBEDDED_RUNS = int(os.environ.get("BENCH_EMBEDDED_RUNS", "2"))
CELERY_RUNS = int(os.environ.get("BENCH_CELERY_RUNS", "4"))
INSTANCE_PER_CLIP = os.environ.get("BENCH_INSTANCE_PER_CLIP", "0") == "1"
WORKERS = 2
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
PGHOST = os.environ.get("BENCH_PGHOST", "127.0.0.1")
PGPORT = int(os.environ.get("BENCH_PGPORT", "5432"))
PGUSER = os.environ.get("BENCH_PGUSER", "postgres")
TOTAL_TIMEOUT_S = 3600


def instance_yaml(database: str | None) -> str:
    """SQLite under DAGSTER_HOME, or PostgreSQL (psycopg2 named: SQLAlchemy 2.1 maps `postgresql` to psycopg 3).

    Literal values, not `{env: PG*}`: a run's instance ref carries this config to the Celery
    workers, which would resolve env references in their own environment.
    """
    config: dict = {"telemetry": {"enabled": False}}  # no `storage`: SQLite files under the instance's folder
    if database is not None:
        config["storage"] = {
            "postgres": {
                "postgres_db": {
                    "hostname": PGHOST,
                    "port": PGPORT,
                    "username": PGUSER,
                    "db_name": database,
                    "scheme": "postgresql+psycopg2",
                }
            }
        }
    return yaml.safe_dump(config)


def make_clips(folder: Path) -> list[Path]:
    """CLIPS clips of 5-10 s with a different tone each."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        make_clip(folder / f"clip-{i:02d}.mp4", seconds=5 + i % 6, size="640x360", tone=300 + 40 * i)
        for i in range(CLIPS)
    ]


@dataclass
class Result:
    mode: str
    setup: str
    runs_in_flight: int
    wall_s: float
    succeeded: int
    run_seconds: list[float]  # per run: RUN_START -> RUN_SUCCESS/FAILURE, from the event log
    load: float = 0.0  # 1-minute load average when the runs ended (other work on the machine shows here)

    @property
    def videos_per_hour(self) -> float:
        return self.succeeded / self.wall_s * 3600

    def row(self) -> str:
        median = statistics.median(self.run_seconds) if self.run_seconds else float("nan")
        return (
            f"| {self.mode} | {self.setup} | {self.runs_in_flight} | {self.succeeded}/{CLIPS} | {self.wall_s:.0f} "
            f"| **{self.videos_per_hour:.0f}** | {median:.1f} | {self.load:.1f} |"
        )


@dataclass
class Group:
    """One instance (DAGSTER_HOME, and its database for PostgreSQL) and the videos it runs."""

    home: Path
    video_ids: list[str]


def prepare(workdir: Path, clips: list[Path], databases: list[str | None]) -> tuple[Path, list[Group]]:
    """A fresh store with the clips in uploads/, and one instance per database with its partitions added."""
    store = workdir / "store"
    (store / "uploads").mkdir(parents=True)
    video_ids = []
    for clip in clips:
        os.link(clip, store / "uploads" / clip.name)
        video_ids.append(video_id_for_upload(f"uploads/{clip.name}"))
    per_group = -(-len(video_ids) // len(databases))
    groups = []
    for i, database in enumerate(databases):
        home = workdir / f"dagster_home_{i:02d}"
        home.mkdir()
        (home / "dagster.yaml").write_text(instance_yaml(database))
        group = Group(home, video_ids[i * per_group : (i + 1) * per_group])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("videos", group.video_ids)
        groups.append(group)
    return store, groups


def base_env(store: Path, executor: str) -> dict[str, str]:
    return {
        **os.environ,
        "AUTOEDIT_STORAGE": str(store),
        "AUTOEDIT_EXECUTOR": executor,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def run_all(env: dict[str, str], groups: list[Group], in_flight: int, logs: Path) -> float:
    """Launch `dagster job execute` for every video, `in_flight` at a time; returns the wall time."""
    logs.mkdir(parents=True, exist_ok=True)
    pending = [(group.home, video_id) for group in groups for video_id in group.video_ids]
    running: list[subprocess.Popen] = []
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < in_flight:
            home, video_id = pending.pop(0)
            tags = json.dumps({"dagster/partition": video_id})
            command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "autoedit_dagster.definitions",
                       "-a", "defs", "-j", "video_job", "--tags", tags]  # fmt: skip
            with (logs / f"{video_id}.log").open("wb") as log:
                running.append(
                    subprocess.Popen(
                        command, env={**env, "DAGSTER_HOME": str(home)}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        time.sleep(0.2)
        running = [p for p in running if p.poll() is None]
        if time.perf_counter() - started > TOTAL_TIMEOUT_S:
            for process in running:
                process.kill()
            raise TimeoutError("runs did not finish")
    return time.perf_counter() - started


def summarize(mode: str, setup: str, in_flight: int, wall: float, groups: list[Group]) -> Result:
    seconds, succeeded = [], 0
    for group in groups:
        with dg.DagsterInstance.from_config(str(group.home)) as instance:
            for run in instance.get_runs(filters=dg.RunsFilter(job_name="video_job")):
                stats = instance.get_run_stats(run.run_id)
                if stats.start_time and stats.end_time:
                    seconds.append(stats.end_time - stats.start_time)
                if run.status == dg.DagsterRunStatus.SUCCESS:
                    succeeded += 1
                    continue
                failures = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_failure]
                detail = failures[0].dagster_event.message if failures else "no failure event"
                print(f"{mode}: run {run.run_id} ({run.tags.get('dagster/partition')}) {run.status.value}: {detail}")
    return Result(mode, setup, in_flight, wall, succeeded, seconds, os.getloadavg()[0])


def bench_embedded(clips: list[Path], workdir: Path) -> Result:
    store, groups = prepare(workdir, clips, [None] * (len(clips) if INSTANCE_PER_CLIP else 1))
    wall = run_all(base_env(store, "in_process"), groups, EMBEDDED_RUNS, workdir / "runs")
    return summarize("embedded", "SQLite, in-process executor", EMBEDDED_RUNS, wall, groups)


@contextlib.contextmanager
def postgres_databases(count: int) -> Iterator[list[str]]:
    """`count` fresh databases, dropped afterwards."""
    import psycopg2

    names = [f"autoedit_bench_{uuid.uuid4().hex[:8]}" for _ in range(count)]
    admin = psycopg2.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname="postgres")
    admin.autocommit = True
    created = []
    try:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
        yield names
    finally:
        with admin.cursor() as cur:
            for name in created:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@contextlib.contextmanager
def celery_workers(env: dict[str, str], workdir: Path) -> Iterator[None]:
    """WORKERS `dagster-celery worker start` processes on both queues; SIGTERM (warm shutdown) at the end."""
    from dagster_celery.make_app import make_app

    config = workdir / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": dict(CELERY_EXECUTOR_CONFIG)}}))
    exe = shutil.which("dagster-celery", path=env["PATH"])
    if exe is None:
        raise RuntimeError("dagster-celery is not on PATH")
    app = make_app({"broker": env["CELERY_BROKER_URL"], "backend": env["CELERY_RESULT_BACKEND"]})
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    # `dagster-celery worker start` needs a DAGSTER_HOME for its generated config module only.
    worker_env = {**env, "DAGSTER_HOME": str(workdir / "dagster_home_00")}
    processes, logs = [], []
    try:
        for i in range(WORKERS):
            log = (workdir / f"worker-{i}.log").open("wb")
            logs.append(log)
            # One comma-separated -q: Celery 5 keeps only the last of several -Q options.
            command = [exe, "worker", "start", "-A", "dagster_celery.app", "-y", str(config), "-q",
                       f"{DEFAULT_QUEUE},{RENDER_QUEUE}", "-n", f"{prefix}-{i}", "--", "--concurrency=1"]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    command, env=worker_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.monotonic() + 90
        nodes: set[str] = set()
        while len(nodes) < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"Celery workers did not start; see {workdir}/worker-*.log")
            nodes = {n for reply in app.control.ping(timeout=1.0) for n in reply if n.startswith(prefix)}
        inspect = app.control.inspect(destination=sorted(nodes), timeout=5.0)
        pids = [s["pid"] for s in (inspect.stats() or {}).values()]
        queues = {node: sorted(q["name"] for q in qs) for node, qs in (inspect.active_queues() or {}).items()}
        if len(pids) != WORKERS or any(q != sorted([DEFAULT_QUEUE, RENDER_QUEUE]) for q in queues.values()):
            raise RuntimeError(f"workers not listening on both queues: {queues}")
        yield
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for process in processes:
            process.wait(60)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for log in logs:
            log.close()
        app.close()


def bench_celery(clips: list[Path], workdir: Path) -> Result:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    with postgres_databases(len(clips) if INSTANCE_PER_CLIP else 1) as databases:
        store, groups = prepare(workdir, clips, databases)
        env = {**base_env(store, "celery"), "CELERY_BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": REDIS_URL}
        with celery_workers(env, workdir):
            wall = run_all(env, groups, CELERY_RUNS, workdir / "runs")
        return summarize("celery", f"PostgreSQL + Redis, {WORKERS} Celery workers x 1", CELERY_RUNS, wall, groups)


PARAGRAPH = (
    "Both set-ups run at most two steps at a time on two cores, so Celery adds no compute here; it moves costs. "
    "Every step becomes a Celery task (the worker reloads the run's instance and plan, the run process polls once "
    "a second, events go to PostgreSQL), so each run takes longer (median run s). But steps run in warm worker "
    "processes, and with more runs in flight than workers the run processes' start-up (imports, plan) overlaps "
    "with the workers' work, where each embedded run pays it inside one of its two slots. The load column "
    "shows other work on the machine at the time: numbers from a shared machine are indicative. Celery's real "
    "gain is horizontal: more workers on more machines, and render steps on dedicated `autoedit-render` workers."
)


def write_report(results: list[Result]) -> str:
    embedded = next(r for r in results if r.mode == "embedded")
    instances = "one instance per clip (BENCH_INSTANCE_PER_CLIP=1)" if INSTANCE_PER_CLIP else "one instance per mode"
    lines = [
        "# Celery throughput",
        "",
        f"Measured by `python -m bench.celery_throughput` on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"{CLIPS} clips of 5-10 s (640x360, 25 fps, lavfi testsrc2 + sine) through `video_job` (tate profile, "
        "1080x1920 render, previews, exports, render checks), each run launched with `dagster job execute`; "
        f"local store, no pool limits, {instances}. Throughput = succeeded clips / wall time from the first "
        "launch to the last run's end.",
        "",
        "| mode | set-up | runs in flight | succeeded | wall s | videos/hour | median run s | load at end |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(r.row() for r in results),
        "",
    ]
    for r in results:
        if r is not embedded and embedded.videos_per_hour:
            lines.append(f"- {r.mode}: {r.videos_per_hour / embedded.videos_per_hour:.2f}x the embedded throughput.")
    if INSTANCE_PER_CLIP:
        lines.append(
            "- One instance per clip: with two or more `videos` partitions in one instance, every `video_job` run "
            "failed at `tate_render_checks` (the unpartitioned check loads all partitions of `edit_timeline` as a "
            "dict), so each clip got its own SQLite home or PostgreSQL database; the work per run is unchanged."
        )
    lines += [
        "",
        PARAGRAPH,
        "",
    ]
    REPORT.write_text("\n".join(lines))
    return "\n".join(lines)


def main() -> None:
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so workers are stopped and databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="autoedit-celery-bench-") as tmp:
        root = Path(tmp)
        clips = make_clips(root / "clips")
        results = [bench_embedded(clips, root / "embedded"), bench_celery(clips, root / "celery")]
    print(write_report(results))


if __name__ == "__main__":
    main()
