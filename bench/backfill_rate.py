"""How fast does a backfill of every video start working? Runs submitted per second, per shape.

    PYTHONPATH=$PWD python -m bench.backfill_rate [--videos N] [--runs K] [--seconds T] [--backends sqlite,postgres]
                                                  [--variants asset,asset-chunk,job,job-threads]

For each backend (SQLite: deploy/dagster.local.yaml; PostgreSQL: deploy/dagster.yaml on a fresh
database) an instance gets N `videos` partitions (nothing materialized). Then, for each variant, in a
fresh interpreter: the code location is loaded as the daemon loads it (workspace.yaml, its own code
server), ONE backfill of every partition is added to the instance, and Dagster's backfill daemon
iteration (`dagster._daemon.backfill.execute_backfill_iteration`, what `dagster-daemon run` calls)
runs in a thread until K runs exist or T seconds passed; then the backfill is cancelled. The runs
are QUEUED by the instance's QueuedRunCoordinator and never executed (no run-queue daemon).

Variants (the choices issue 17 lists):

- `asset`: an asset backfill of video_job's assets (what `autoedit backfill --all --with-analysis`
  launches before this change), Dagster's defaults: the backfill row rewritten every 25 runs;
- `asset-chunk`: the same with DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE=BIG (the row written once per
  BIG runs);
- `job`: a job backfill of `video_job` (its partition set): one run per partition by construction,
  the job's tags (the render limit's) on every run;
- `job-threads`: the same with the instance's `backfills: num_submit_workers` (deploy/*.yaml: 4;
  runs created by that many threads, as the daemon does); `job-threads-N`: with N threads;
- any variant with the suffix `-unpooled` (PostgreSQL only): the same on dagster-postgres' storage as
  shipped (`storage: postgres:`, a new connection for each group of statements) instead of
  deploy/dagster.yaml's, which keeps its connections open (autoedit_dagster/pg_storage.py).

Measured from the run storage: runs created, their create timestamps (rate = runs after the first /
seconds between the first and the last), the delay from adding the backfill to the first run, the
event rows written per run created, and the size of the backfill's row. The machine's load is
reported with each figure. Writes bench/BACKFILL_RATE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.celery_throughput import PGHOST, PGPORT, PGUSER, postgres_databases

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "BACKFILL_RATE.md"
VARIANTS = ("asset", "asset-chunk", "job", "job-threads")
BIG_CHUNK = 1000
UNPOOLED = "-unpooled"

# Runs in a fresh interpreter (DAGSTER_HOME set): one backfill, the daemon's iteration, the figures.
MEASURE = r"""
import json, logging, os, sys, threading, time, uuid
from concurrent.futures import ThreadPoolExecutor
import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from autoedit_dagster.names import RENDER_RUN_TAGS, VIDEO_JOB

variant, want, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
instance = dg.DagsterInstance.get()
target = ModuleTarget(module_name="autoedit_dagster.definitions", attribute="defs", working_directory=os.getcwd(),
                      location_name="autoedit_dagster.definitions")
logger = logging.getLogger("backfill_rate")
with WorkspaceProcessContext(instance, target) as context:
    workspace = context.create_request_context()
    (location,) = workspace.code_locations
    repo = next(iter(location.get_repositories().values()))
    job = repo.get_full_job(VIDEO_JOB)
    keys = instance.get_dynamic_partitions("videos")
    backfill_id = uuid.uuid4().hex[:8]
    if variant.startswith("asset"):
        assets = sorted(job.asset_selection or [n.key for n in workspace.asset_graph.asset_nodes
                        if n.job_names and VIDEO_JOB in n.job_names])
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id, asset_graph=workspace.asset_graph, partition_names=None,
            asset_selection=assets, backfill_timestamp=time.time(), tags=RENDER_RUN_TAGS,
            dynamic_partitions_store=instance, all_partitions=True, title=None, description=None, run_config=None)
    else:
        (partition_set,) = [p for p in repo.get_partition_sets() if p.job_name == VIDEO_JOB]
        backfill = PartitionBackfill(
            backfill_id=backfill_id, status=BulkActionStatus.REQUESTED, from_failure=False, tags={},
            backfill_timestamp=time.time(), partition_set_origin=partition_set.get_remote_origin(),
            partition_names=keys)
    added = time.time()
    instance.add_backfill(backfill)
    # As the daemon does with the instance's `backfills: num_submit_workers` (dagster/_daemon/daemon.py).
    # `job-threads-N`: N threads instead of the instance's setting.
    workers = instance.get_settings("backfills").get("num_submit_workers") or 4
    if variant.startswith("job-threads-"):
        workers = int(variant.rsplit("-", 1)[1])
    submit = ThreadPoolExecutor(workers) if "threads" in variant else None
    cpu = time.process_time()
    failure = []
    def daemon():
        try:
            while True:
                list(execute_backfill_iteration(context, logger, submit_threadpool_executor=submit))
                current = instance.get_backfill(backfill_id)
                if current.status != BulkActionStatus.REQUESTED:
                    return
        except Exception as error:  # reported, not swallowed
            failure.append(repr(error))
    thread = threading.Thread(target=daemon, daemon=True)
    thread.start()
    tagged = RunsFilter(tags={"dagster/backfill": backfill_id})
    while time.time() - added < seconds and instance.get_runs_count(tagged) < want and thread.is_alive():
        time.sleep(0.5)
    instance.update_backfill(instance.get_backfill(backfill_id).with_status(BulkActionStatus.CANCELED))
    thread.join(timeout=120)
    cpu = time.process_time() - cpu
    records = instance.get_run_records(tagged)
    created = sorted(r.create_timestamp.timestamp() for r in records)
    runs = [r.dagster_run for r in records]
    row = instance.get_backfill(backfill_id)
    from dagster._serdes import serialize_value
    one = runs[0] if runs else None
    events = sum(len(instance.all_logs(r.run_id)) for r in runs[:20])
    def video(run):  # an asset backfill's run names its partition as a range of one
        tags = run.tags
        if "dagster/partition" in tags:
            return tags["dagster/partition"]
        start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        return start if start == end else None
    print("RESULT " + json.dumps({
        "variant": variant, "runs": len(runs), "failure": failure, "workers": workers if submit else 1,
        "cpu_s_per_run": cpu / len(runs) if runs else None,
        "first_after_s": created[0] - added if created else None,
        "rate": (len(created) - 1) / (created[-1] - created[0]) if len(created) > 1 else 0.0,
        "span_s": created[-1] - created[0] if created else 0.0,
        "events_per_run": events / min(len(runs), 20) if runs else None,
        "backfill_row_bytes": len(serialize_value(row)),
        "one_partition_per_run": all(video(r) is not None for r in runs),
        "render_tag": all(r.tags.get("autoedit/kind") == "render" for r in runs),
        "distinct_partitions": len({video(r) for r in runs}),
        "load": os.getloadavg(),
    }))
"""


def _instance_home(backend: str, root: Path, stack: contextlib.ExitStack) -> tuple[Path, dict[str, str]]:
    home = root / backend / "dagster_home"
    home.mkdir(parents=True)
    extra: dict[str, str] = {}
    if backend == "sqlite":
        shutil.copyfile(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    else:
        (database,) = stack.enter_context(postgres_databases(1))
        extra = {"PGHOST": PGHOST, "PGPORT": str(PGPORT), "PGUSER": PGUSER, "PGPASSWORD": "", "PGDATABASE": database}
        shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home, extra


def runs_on(backend: str, variant: str) -> bool:
    """An `-unpooled` variant (sensor_tick's `unpooled` too) compares PostgreSQL storages: not on SQLite."""
    return backend == "postgres" or not variant.endswith(UNPOOLED.lstrip("-"))


def unpooled_home(home: Path) -> Path:
    """A DAGSTER_HOME beside `home` whose instance is `home`'s on dagster-postgres' storage as shipped."""
    other = home.parent / f"{home.name}{UNPOOLED}"
    if not other.exists():
        other.mkdir()
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        config["storage"] = {"postgres": config["storage"]["custom"]["config"]}
        (other / "dagster.yaml").write_text(yaml.safe_dump(config))
    return other


def _env(home: Path, extra: dict[str, str], variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOEDIT_", "DAGSTER_"))}
    if variant.endswith(UNPOOLED):  # the same database and store, the other storage class
        home = unpooled_home(home)
    env.update(PYTHONPATH=str(ROOT), DAGSTER_HOME=str(home), AUTOEDIT_STORAGE=str(home.parent / "storage"), **extra)
    if variant.removesuffix(UNPOOLED) == "asset-chunk":
        env["DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE"] = str(BIG_CHUNK)
    return env


SEED = r"""
import sys, dagster as dg
from testsupport.archive import video_ids
with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions("videos", video_ids(int(sys.argv[1])))
"""

CLEAR = r"""
import dagster as dg
with dg.DagsterInstance.get() as instance:
    instance.run_storage.wipe()
"""


def run_backend(backend: str, videos: int, runs: int, seconds: float, variants: list[str], work: Path,
                rounds: int) -> list[dict]:  # fmt: skip
    out = []
    with contextlib.ExitStack() as stack:
        home, extra = _instance_home(backend, work, stack)
        (home.parent / "storage").mkdir()
        env = _env(home, extra, "")
        subprocess.run([sys.executable, "-c", SEED, str(videos)], env=env, cwd=ROOT, check=True)
        for _ in range(rounds):
            for variant in variants:  # alternate the variants round by round
                if not runs_on(backend, variant):
                    continue
                subprocess.run([sys.executable, "-c", CLEAR], env=env, cwd=ROOT, check=True)
                command = [sys.executable, "-c", MEASURE, variant.removesuffix(UNPOOLED), str(runs), str(seconds)]
                done = subprocess.run(command, env=_env(home, extra, variant), cwd=ROOT, capture_output=True, text=True)
                if done.returncode != 0:
                    result = {"variant": variant, "error": done.stderr.strip()[-800:]}
                else:
                    result = json.loads(
                        next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))[7:]
                    )
                result["backend"], result["variant"] = backend, variant
                print(json.dumps(result), file=sys.stderr, flush=True)
                out.append(result)
    return out


def write_report(results: list[dict], videos: int, runs: int, seconds: float) -> str:
    lines = [
        "# Backfill of every video: runs submitted per second",
        "",
        f"Written by `bench/backfill_rate.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} cores shared with other sessions (load at the end of each "
        f"measurement given). {videos:,} `videos` partitions (none materialized); each measurement stops at "
        f"{runs} runs created or {seconds:.0f} s. Rate = runs after the first / seconds from the first "
        "run's create timestamp to the last's (run storage).",
        "",
        "| backend | variant | runs | first run after (s) | runs/s | CPU s per run (this process) | events per run "
        "| backfill row (bytes) | one video per run | render tag | load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['variant']} | error: {r['error'][-200:]!r} | | | | | | | | |")
            continue
        first = f"{r['first_after_s']:.1f}" if r["first_after_s"] is not None else "-"
        lines.append(
            f"| {r['backend']} | {r['variant']} | {r['runs']} | {first} | {r['rate']:.2f} | "
            f"{r.get('cpu_s_per_run') or 0:.3f} | "
            f"{r['events_per_run'] or 0:.0f} | {r['backfill_row_bytes']:,} | "
            f"{'yes' if r['one_partition_per_run'] else 'NO'} | {'yes' if r['render_tag'] else 'NO'} | "
            f"{r['load'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300, help="stop each measurement at this many runs")
    parser.add_argument("--seconds", type=float, default=180.0, help="... or after this long")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    results: list[dict] = []
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="autoedit-backfill-", dir=scratch) as work:
        for backend in args.backends.split(","):
            results += run_backend(backend, args.videos, args.runs, args.seconds, args.variants.split(","),
                                   Path(work), args.rounds)  # fmt: skip
    REPORT.write_text(write_report(results, args.videos, args.runs, args.seconds))
    (ROOT / "bench" / "backfill_rate.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
