"""Archive scale: `autoedit status`, the upload sensor's tick and its cursor, before and after.

    PYTHONPATH=$PWD python -m bench.archive_scale [--videos N] [--sqlite-videos N] [--burst N] [--no-before]
                                                  [--measure ui,status,all,sensor] [--report PATH] [--figures PATH]

For each backend (SQLite: deploy/dagster.local.yaml; PostgreSQL: deploy/dagster.yaml on a fresh
database, as testsupport/services.py makes them) an instance is filled without rendering anything:
`testsupport.archive.seed_archive` writes, per processed video, the `videos` partition, a SUCCESS run,
planned and stored materializations of video_job's 10 assets and 5 passed render-check
evaluations (unpartitioned, as the checks record them); a few more videos get a QUEUED run never executed. Then
dagster-webserver serves it and, alternating the code of main at BASE (a `git archive` in a temp
folder) and of this checkout, each measurement is repeated and its median reported (`--no-before`:
this checkout's code only, the "before" column left empty):

- the UI's asset graph (`AssetGraphLiveQuery` for every asset) and the oldest video's partition
  page, as the installed UI writes them (bench/ui_queries.py), on this checkout's code location;
- `autoedit status VIDEO` as a whole command (a fresh interpreter: imports included), for the
  oldest video;
- its API part (the client's calls, timed inside the process) with the requests and bytes moved;
- `autoedit status --limit 0` (every video);
- the upload sensor's evaluation for a tick that requests 20 runs while a burst of `--burst`
  files sits in uploads/ (inside the late-arrival window), and its cursor once the whole burst
  was handled. The daemon's own work for a tick (creating the runs) is not in this figure.

Writes bench/ARCHIVE.md. The machine's load is reported with the numbers: on a shared 2-core box
the absolute figures move a lot; the before/after ratio, measured alternately, less so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import ui_queries
from bench.celery_throughput import PGHOST, PGPORT, PGUSER, postgres_databases
from testsupport.archive import seed_archive, video_ids
from testsupport.servers import Instance, Servers

ROOT = Path(__file__).resolve().parents[1]
BASE = "3bb6f27"
REPEATS = 5
QUEUED = 20
# The "before" column when only this checkout is measured (`--no-before`).
EMPTY_STATUS: dict[str, list] = {"whole": [], "api": [], "requests": [], "bytes": []}

# Runs inside a fresh interpreter with PYTHONPATH set to one of the two checkouts.
API_SCRIPT = r"""
import json, sys, time, httpx
from autoedit_dagster.remote.client import AutoEditClient
url, video, mode = sys.argv[1], sys.argv[2], sys.argv[3]
moved = {"requests": 0, "bytes": 0}
class Counting(httpx.HTTPTransport):
    def handle_request(self, request):
        response = super().handle_request(request)
        response.read()
        moved["requests"] += 1
        moved["bytes"] += len(response.content)
        return response
with AutoEditClient(url, transport=Counting(), timeout=600) as client:
    start = time.perf_counter()
    if mode == "one":
        if hasattr(client, "newest_video_ids"):
            client.video_status([video])
        else:
            client.require_videos([video])
            client.video_status([video])
    else:
        if hasattr(client, "newest_video_ids"):
            client.video_status(client.newest_video_ids(0), known=True)
        else:
            client.video_status(list(reversed(client.video_ids())))
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, **moved}))
"""

SENSOR_SCRIPT = r"""
import json, sys, time
import dagster as dg
from autoedit_dagster.resources import LocalMediaStore
from autoedit_dagster.sensors.upload_sensor import build_upload_sensor
store_root, last_mtime = sys.argv[1], float(sys.argv[2])
store = LocalMediaStore(root=store_root)
offset = [0.0]
sensor = build_upload_sensor("video_job", clock=lambda: last_mtime + offset[0])
instance = dg.DagsterInstance.get()
def tick(cursor, runs):
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"store": store})
    start = time.perf_counter()
    result = sensor(context)
    return time.perf_counter() - start, result
offset[0] = 1.0
_, first = tick(None, 0)  # every file still young: remembered as pending
times, cursor, requested, sizes = [], first.cursor, 0, []
offset[0] = 30.0
for _ in range(int(sys.argv[3])):
    seconds, result = tick(cursor, 20)
    times.append(seconds)
    requested += len(result.run_requests)
    cursor = result.cursor
    sizes.append(len(cursor.encode()))
# Then the rest of the burst in one tick: the cursor once every file of the burst was handled.
everything = build_upload_sensor("video_job", clock=lambda: last_mtime + offset[0], max_runs_per_tick=10**6)
context = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"store": store})
whole = everything(context)
print(json.dumps({"tick_seconds": times, "requested": requested, "cursor_bytes": sizes,
                  "burst_cursor_bytes": len(whole.cursor.encode())}))
"""


def _median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def base_checkout() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="autoedit-base-"))
    try:
        archive = subprocess.run(["git", "archive", BASE], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _env(code: Path, home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOEDIT_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(code), DAGSTER_HOME=str(home), **extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    # Run from the checkout measured: `python -m` and `-c` put the working folder first on sys.path.
    code = env["PYTHONPATH"]
    return subprocess.run(args, cwd=code, env=env, capture_output=True, text=True, timeout=timeout)


def measure_status(url: str, video: str, codes: dict[str, Path], home: Path, extra: dict[str, str]) -> dict:
    out: dict[str, dict[str, list]] = {name: {"whole": [], "api": [], "requests": [], "bytes": []} for name in codes}
    for _ in range(REPEATS):
        for name, code in codes.items():  # alternate: before, after, before, ...
            env = _env(code, home, extra)
            start = time.perf_counter()
            done = _run([sys.executable, "-m", "autoedit_dagster.cli", "status", video, "--url", url, "--json"], env)
            out[name]["whole"].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{name} status failed: {done.stderr[-500:]}")
            api = json.loads(_run([sys.executable, "-c", API_SCRIPT, url, video, "one"], env).stdout)
            out[name]["api"].append(api["seconds"])
            out[name]["requests"].append(api["requests"])
            out[name]["bytes"].append(api["bytes"])
    return out


def measure_all(url: str, codes: dict[str, Path], home: Path, extra: dict[str, str]) -> dict:
    out = {}
    for name, code in codes.items():
        done = _run([sys.executable, "-c", API_SCRIPT, url, "-", "all"], _env(code, home, extra))
        out[name] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-300:]}
    return out


def measure_sensor(store: Path, last_mtime: float, codes: dict[str, Path], home: Path, extra: dict[str, str],
                   ticks: int) -> dict:  # fmt: skip
    out = {}
    for name, code in codes.items():
        done = _run([sys.executable, "-c", SENSOR_SCRIPT, str(store), str(last_mtime), str(ticks)],
                    _env(code, home, extra))  # fmt: skip
        out[name] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-300:]}
    return out


def measure_ui(url: str, video: str) -> dict:
    """The UI's own documents (bench/ui_queries.py), REPEATS times each: the asset graph and the
    oldest video's partition page of the render (the asset its checks are on)."""
    out: dict[str, list] = {"graph": [], "graph_bytes": [], "page": [], "page_bytes": [], "bare": [], "bare_bytes": []}
    for _ in range(REPEATS):
        bare = ui_queries.graph_query_without_check_partitions(url)
        out["bare"].append(bare["seconds"])
        out["bare_bytes"].append(bare["bytes"])
        graph = ui_queries.graph_query(url)
        page = ui_queries.partition_page(url, ["tate", "render"], video)
        out["graph"].append(graph["seconds"])
        out["graph_bytes"].append(graph["bytes"])
        out["page"].append(page["seconds"])
        out["page_bytes"].append(page["bytes"])
    return out


def make_burst(store: Path, count: int, age: float = 0.0) -> float:
    """`count` one-byte uploads under uploads/burst/, their mtime `age` seconds ago (settled when it
    is more than the sensor's settle time); returns that mtime."""
    folder = store / "uploads" / "burst"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"tape-{i:05d}.mp4").write_bytes(b"x")
    if age:
        mtime = time.time() - age
        for path in folder.iterdir():
            os.utime(path, (mtime, mtime))
        return mtime
    return time.time()


def run_backend(backend: str, count: int, burst: int, codes: dict[str, Path], work: Path,
                parts: set[str]) -> dict:  # fmt: skip
    root = work / backend
    extra: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            instance = Instance.create(root)
        else:
            (database,) = stack.enter_context(postgres_databases(1))
            extra = {"PGHOST": PGHOST, "PGPORT": str(PGPORT), "PGUSER": PGUSER, "PGPASSWORD": "",
                     "PGDATABASE": database}  # fmt: skip
            os.environ.update(extra)
            home, storage = root / "dagster_home", root / "storage"
            home.mkdir(parents=True)
            storage.mkdir()
            shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
            instance = Instance(root, home, storage)
        done, queued = video_ids(count), video_ids(QUEUED, start=count)
        start = time.perf_counter()
        with instance.open() as dagster_instance:
            seed_archive(dagster_instance, done, queued, storage=str(instance.storage))
        seeded = time.perf_counter() - start
        servers = stack.enter_context(Servers(instance))
        webserver = servers.start_webserver()
        servers.wait_webserver(webserver)
        result = {"videos": count, "queued": QUEUED, "seed_seconds": seeded, "seed_load": os.getloadavg()}
        if "ui" in parts:
            result["ui"] = measure_ui(webserver.url, done[0])
            result["ui_load"] = os.getloadavg()
        if "status" in parts:
            result["status"] = measure_status(webserver.url, done[0], codes, instance.home, extra)
        if "all" in parts:
            result["status_all"] = measure_all(webserver.url, codes, instance.home, extra)
        if "sensor" in parts:
            last_mtime = make_burst(instance.storage, burst)
            result["sensor"] = measure_sensor(instance.storage, last_mtime, codes, instance.home, extra, ticks=5)
        result["load"] = os.getloadavg()
        return result


def _row(label: str, before: str, after: str) -> str:
    return f"| {label} | {before} | {after} |"


def _stat(values: list, pick: Callable[[list], float], spec: str) -> str:
    return format(pick(values), spec) if values else "-"


def _fmt_all(x: dict) -> str:
    if not x:
        return "-"
    return f"{x['seconds']:.1f} s, {x['requests']} requests, {x['bytes']:,} bytes" if "seconds" in x else x["error"]


def _fmt_tick(x: dict) -> str:
    if not x:
        return "-"
    if "error" in x:
        return x["error"]
    return f"{_median(x['tick_seconds']):.2f} s (worst {max(x['tick_seconds']):.2f})"


def _fmt_cursor(x: dict, field: str) -> str:
    if field not in x:
        return "-"
    value = x[field]
    return f"{max(value) if isinstance(value, list) else value:,} bytes"


def write_report(results: dict[str, dict], burst: int) -> str:
    lines = [
        "# Archive scale: `autoedit status` and the upload sensor, before and after",
        "",
        f"Written by `bench/archive_scale.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} cores, shared with other engineers' test runs (load averages "
        "given per backend): absolute times move with the load; "
        + (
            f"before and after were measured alternately, {REPEATS} times each, medians shown. Before: main at "
            f"{BASE}. After: this branch."
            if any("before" in r.get("status", {"before": 1}) for r in results.values())
            else f"this branch only (`--no-before`), {REPEATS} times each, medians shown."
        ),
        "",
    ]
    for backend, r in results.items():
        lines += [
            f"## {backend}: {r['videos']:,} processed videos + {r['queued']} queued runs "
            f"(seeded in {r['seed_seconds']:.0f} s at load {r['seed_load'][0]:.1f}; load at the end "
            f"{', '.join(f'{x:.1f}' for x in r['load'])})",
            "",
        ]
        if "ui" in r:
            ui = r["ui"]
            lines += [
                f"UI documents as the installed UI writes them (bench/ui_queries.py), {REPEATS} times, this "
                f"branch's code location (load {r['ui_load'][0]:.1f}):",
                "",
                "| measure | median s | worst s | bytes |",
                "| --- | ---: | ---: | ---: |",
                f"| `AssetGraphLiveQuery`, every asset | {_median(ui['graph']):.2f} | {max(ui['graph']):.2f} | "
                f"{ui['graph_bytes'][0]:,} |",
                f"| ... the same without the checks' `partitionStatuses` (a diagnostic) | {_median(ui['bare']):.2f} | "
                f"{max(ui['bare']):.2f} | {ui['bare_bytes'][0]:,} |",
                f"| oldest video's partition page of tate/render (3 documents, in a row) | {_median(ui['page']):.2f} "
                f"| {max(ui['page']):.2f} | {ui['page_bytes'][0]:,} |",
                "",
            ]
        if "status" not in r:
            continue
        before, after = r["status"].get("before", EMPTY_STATUS), r["status"]["after"]
        lines += [
            "| measure | before | after |",
            "| --- | --- | --- |",
            _row(
                "`autoedit status VIDEO`, whole command (median s)",
                _stat(before["whole"], _median, ".2f"),
                _stat(after["whole"], _median, ".2f"),
            ),
            _row("... worst of the runs (s)", _stat(before["whole"], max, ".2f"), _stat(after["whole"], max, ".2f")),
            _row("its API part (median s)", _stat(before["api"], _median, ".3f"), _stat(after["api"], _median, ".3f")),
            _row(
                "... requests / bytes received",
                f"{before['requests'][0]} / {before['bytes'][0]:,}" if before["requests"] else "-",
                f"{after['requests'][0]} / {after['bytes'][0]:,}",
            ),
        ]
        if "status_all" in r:
            lines.append(_row("`autoedit status --limit 0` (API part)", _fmt_all(r["status_all"].get("before", {})),
                              _fmt_all(r["status_all"]["after"])))  # fmt: skip
        if "sensor" not in r:
            lines.append("")
            continue
        sb, sa = r["sensor"].get("before", {}), r["sensor"]["after"]
        lines.append(_row(f"upload-sensor evaluation, 20-run tick, {burst:,} files in uploads/", _fmt_tick(sb),
                          _fmt_tick(sa)))  # fmt: skip
        lines.append(_row("sensor cursor after those ticks (largest)", _fmt_cursor(sb, "cursor_bytes"),
                          _fmt_cursor(sa, "cursor_bytes")))  # fmt: skip
        lines.append(_row(f"sensor cursor once all {burst:,} files were handled (within the hour)",
                          _fmt_cursor(sb, "burst_cursor_bytes"), _fmt_cursor(sa, "burst_cursor_bytes")))  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000, help="processed videos on PostgreSQL")
    parser.add_argument("--sqlite-videos", type=int, default=None, help="on SQLite (default: --videos)")
    parser.add_argument("--burst", type=int, default=10_000, help="files in uploads/ for the sensor tick")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--measure", default="ui,status,all,sensor", help="which parts (comma-separated)")
    parser.add_argument("--no-before", action="store_true", help=f"measure this checkout only, not main at {BASE}")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "ARCHIVE.md", help="the report to write")
    parser.add_argument("--figures", type=Path, default=ROOT / "bench" / "archive_scale.json", help="its figures")
    args = parser.parse_args()
    results = {}
    # Instances on tmpfs when there is one: SQLite commits there cost no fsync, so seeding is ~10x faster.
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with base_checkout() as base, tempfile.TemporaryDirectory(prefix="autoedit-archive-", dir=scratch) as work:
        codes = {"after": ROOT} if args.no_before else {"before": base, "after": ROOT}
        for backend in args.backends.split(","):
            count = args.sqlite_videos if backend == "sqlite" and args.sqlite_videos else args.videos
            print(f"{backend}: seeding {count} videos", file=sys.stderr, flush=True)
            results[backend] = run_backend(backend, count, args.burst, codes, Path(work), set(args.measure.split(",")))
            print(json.dumps(results[backend])[:2000], file=sys.stderr, flush=True)
    args.report.write_text(write_report(results, args.burst))
    args.figures.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
