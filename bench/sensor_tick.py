"""The upload sensor's whole tick as the daemon runs it: evaluation plus the 20 runs it creates.

    PYTHONPATH=$PWD python -m bench.sensor_tick [--burst N] [--ticks K] [--rounds R] [--backends sqlite,postgres]

For each backend (SQLite: deploy/dagster.local.yaml; PostgreSQL: deploy/dagster.yaml on a fresh
database) a local store gets a burst of N settled uploads. Then, per variant, in a fresh
interpreter: the code location is loaded as the daemon loads it (its own code server), and
Dagster's sensor daemon iteration (`dagster._daemon.sensor.execute_sensor_iteration`, what
`dagster-daemon run` calls) runs K times, each as soon as the sensor is due again (its minimum
interval, read from `autoedit_dagster.definitions.upload_sensor`). The runs are QUEUED and never
executed. Between variants the run and schedule storages are wiped, so each variant sees the same
burst from the start.

Variants: `serial`, the daemon creating a tick's runs one after another (no `sensors:` settings);
`threads`, as with the instance setting `sensors: num_submit_workers` (its value, else 4), the runs
created by that many threads; `unpooled` (PostgreSQL only), `serial` on dagster-postgres' storage as
shipped (`storage: postgres:`, a new connection for each group of statements) instead of
deploy/dagster.yaml's, which keeps its connections open (autoedit_dagster/pg_storage.py).
With `PGOPTIONS` in the environment (e.g. `-c synchronous_commit=off`)
PostgreSQL's sessions take those settings. Issue 17 asks for a tick (its 20 runs created) in <= 5 s,
and 10,000 uploads turned into runs in <= 30 minutes. Writes bench/SENSOR_TICK.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.archive_scale import make_burst
from bench.backfill_rate import CLEAR as CLEAR_RUNS
from bench.backfill_rate import ROOT, UNPOOLED, _env, _instance_home, runs_on

REPORT = ROOT / "bench" / "SENSOR_TICK.md"
VARIANTS = ("serial", "threads", "unpooled")

CLEAR = (
    CLEAR_RUNS
    + r"""
with dg.DagsterInstance.get() as instance:
    instance.schedule_storage.wipe()
"""
)

MEASURE = r"""
import json, logging, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import dagster as dg
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.sensor import execute_sensor_iteration

from autoedit_dagster.definitions import upload_sensor

variant, ticks = sys.argv[1], int(sys.argv[2])
interval = upload_sensor.minimum_interval_seconds  # the daemon evaluates it no more often than this
instance = dg.DagsterInstance.get()
target = ModuleTarget(module_name="autoedit_dagster.definitions", attribute="defs", working_directory=os.getcwd(),
                      location_name="autoedit_dagster.definitions")
# As the daemon does with the instance's `sensors: num_submit_workers` (4 where the instance sets none).
workers = (instance.get_settings("sensors").get("num_submit_workers") or 4) if variant == "threads" else None
submit = ThreadPoolExecutor(workers) if workers else None
logger = logging.getLogger("sensor_tick")
rows = []
with WorkspaceProcessContext(instance, target) as context:
    for _ in range(ticks):
        before = instance.get_runs_count()
        started = time.perf_counter()
        list(execute_sensor_iteration(context, logger, threadpool_executor=None, submit_threadpool_executor=submit))
        seconds = time.perf_counter() - started
        rows.append({"seconds": seconds, "runs": instance.get_runs_count() - before})
        time.sleep(max(0.0, interval + 0.5 - seconds))
print("RESULT " + json.dumps({"variant": variant, "workers": workers or 1, "interval_s": interval, "ticks": rows,
                             "load": os.getloadavg()}))
"""


def run_backend(backend: str, burst: int, ticks: int, rounds: int, work: Path) -> list[dict]:
    out = []
    with contextlib.ExitStack() as stack:
        home, extra = _instance_home(backend, work, stack)
        storage = home.parent / "storage"
        make_burst(storage, burst, age=60)
        env = _env(home, extra, "")
        for _ in range(rounds):
            for variant in VARIANTS:  # alternated round by round
                if not runs_on(backend, variant):
                    continue
                subprocess.run([sys.executable, "-c", CLEAR], env=env, cwd=ROOT, check=True)
                done = subprocess.run(
                    [sys.executable, "-c", MEASURE, variant, str(ticks)],
                    env=_env(home, extra, UNPOOLED) if variant == "unpooled" else env,
                    cwd=ROOT, capture_output=True, text=True,
                )  # fmt: skip
                if done.returncode != 0:
                    result: dict = {"variant": variant, "error": done.stderr.strip()[-800:]}
                else:
                    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))
                    result = json.loads(line[7:])
                result["backend"] = backend
                print(json.dumps(result), file=sys.stderr, flush=True)
                out.append(result)
    return out


def write_report(results: list[dict], burst: int) -> str:
    lines = [
        "# The upload sensor's tick, as the daemon runs it",
        "",
        f"Written by `bench/sensor_tick.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} cores (load at the end of each measurement given). {burst:,} "
        "settled uploads waiting; each tick is one `execute_sensor_iteration` of the daemon (the sensor "
        "evaluated by the code server, then its run requests turned into queued runs). Ticks that "
        "created runs only; runs/s = runs created / tick seconds.",
        "",
        "| backend | variant | submit threads | ticks | runs per tick | tick s (median) | worst | runs/s (median) "
        "| 10,000 uploads at this pace, min (a tick every max(tick s, interval)) | load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['variant']} | error: {r['error'][-200:]!r} | | | | | | | |")
            continue
        made = [t for t in r["ticks"] if t["runs"]]
        if not made:
            lines.append(f"| {r['backend']} | {r['variant']} | {r['workers']} | 0 | - | - | - | - | - | - |")
            continue
        seconds = statistics.median(t["seconds"] for t in made)
        runs = statistics.median(t["runs"] for t in made)
        # The daemon starts a tick when the last one is done and the sensor's interval has passed.
        minutes = 10_000 / runs * max(seconds, r["interval_s"]) / 60
        lines.append(
            f"| {r['backend']} | {r['variant']} | {r['workers']} | {len(made)} | {runs:.0f} | {seconds:.2f} | "
            f"{max(t['seconds'] for t in made):.2f} | {runs / seconds:.2f} | {minutes:.0f} | {r['load'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(
        prefix="autoedit-sensor-tick-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
    ) as work:
        for backend in args.backends.split(","):
            results += run_backend(backend, args.burst, args.ticks, args.rounds, Path(work))
    args.report.write_text(write_report(results, args.burst))
    print(args.report.read_text())


if __name__ == "__main__":
    main()
