"""What `autoedit backfill --all` costs at archive scale, as the CLI launches it (a job backfill).

    PYTHONPATH=$PWD python -m bench.backfill_cli [--videos 10000] [--runs 100] [--seconds 45]

An instance as deploy/dagster.local.yaml configures it (SQLite, QueuedRunCoordinator: runs are
queued, never executed here; 4 backfill submit threads) gets N `videos` partitions. The CLI's own
client (`AutoEditClient`) talks to Dagster's GraphQL schema in-process over the real code
location (`testsupport.graphql_inprocess`: the documents the CLI sends a webserver, no HTTP
server), and measures:

- `launch`: `backfill --all --with-analysis` (`video_job`): its requests, bytes, wall seconds;
- `status`: `backfill --status` (partition names, counts, up to 1,000 runs) and one poll of
  `--wait` (counts only), bytes and seconds, before and after runs exist;
- the daemon's iteration (`execute_backfill_iteration` with the instance's 4 submit threads, as
  `dagster-daemon` runs it) on that backfill until K runs exist or T seconds pass: runs/s
  (runs after the first / seconds from the first run's creation to the last's).

Everything (client, schema, daemon iteration) shares this process and the code server; the load
average is reported. Writes bench/BACKFILL_CLI.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import httpx
from dagster._core.execution.backfill import BulkActionStatus
from dagster._daemon.backfill import execute_backfill_iteration

from autoedit_dagster.names import backfill_job_name
from autoedit_dagster.remote.client import AutoEditClient
from testsupport import graphql_inprocess as inprocess

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "BACKFILL_CLI.md"


class Counting(httpx.BaseTransport):
    """Counts the requests and bytes each way of the transport it wraps."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.requests, self.sent, self.received = inner, 0, 0, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.requests += 1
        self.sent += len(request.content)
        self.received += len(response.content)
        return response

    def reset(self) -> None:
        self.requests = self.sent = self.received = 0


def measure(videos: int, want: int, seconds: float, work: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    # The code server inherits both; the instance is the local deployment's (no run-queue daemon here).
    os.environ.update(DAGSTER_HOME=str(home), AUTOEDIT_STORAGE=str(work / "storage"))
    with dg.DagsterInstance.get() as instance, inprocess.served(instance) as process:
        instance.add_dynamic_partitions("videos", [f"clip-{i:016x}" for i in range(videos)])
        counting = Counting(inprocess.transport(instance, process))
        with AutoEditClient("http://dagster.test", transport=counting) as client:

            def timed(label: str, call):
                counting.reset()
                started = time.perf_counter()
                result = call()
                took = time.perf_counter() - started
                rows.append((label, f"{counting.requests} requests, {counting.sent:,} B sent, "
                                    f"{counting.received:,} B received, {took:.2f} s"))  # fmt: skip
                return result

            job = backfill_job_name("tate", with_analysis=True)
            backfill_id = timed(f"launch `--all --with-analysis` ({job})", lambda: client.launch_backfill(job, None))
            stored = instance.get_backfill(backfill_id)
            assert stored is not None and len(stored.partition_names or ()) == videos
            timed("`--status` before any run", lambda: client.backfill(backfill_id))
            timed("`--wait` poll before any run", lambda: client.backfill(backfill_id, full=False))

            workers = instance.get_settings("backfills").get("num_submit_workers") or 4
            submit = ThreadPoolExecutor(workers)
            logger = logging.getLogger("backfill_cli")
            done = threading.Event()

            def daemon() -> None:
                while not done.is_set():
                    list(execute_backfill_iteration(process, logger, submit_threadpool_executor=submit))
                    if instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED:  # type: ignore[union-attr]
                        return

            tagged = dg.RunsFilter(tags={"dagster/backfill": backfill_id})
            started = time.time()
            thread = threading.Thread(target=daemon, daemon=True)
            thread.start()
            while time.time() - started < seconds and instance.get_runs_count(tagged) < want and thread.is_alive():
                time.sleep(0.5)
            done.set()
            instance.update_backfill(instance.get_backfill(backfill_id).with_status(BulkActionStatus.CANCELED))  # type: ignore[union-attr]
            thread.join(timeout=120)
            submit.shutdown(wait=True)
            records = instance.get_run_records(tagged)
            created = sorted(r.create_timestamp.timestamp() for r in records)
            rate = (len(created) - 1) / (created[-1] - created[0]) if len(created) > 1 else 0.0
            one_each = len({r.dagster_run.tags.get("dagster/partition") for r in records}) == len(records)
            tagged_all = all(r.dagster_run.tags.get("autoedit/kind") == "render" for r in records)
            rows.append((
                f"daemon iteration, {workers} submit threads",
                f"{len(records)} runs, first {created[0] - started:.1f} s after start, {rate:.2f} runs/s; "
                f"one video per run: {one_each}; render tag on every run: {tagged_all}",
            ))  # fmt: skip
            timed(f"`--status` with {len(records)} runs", lambda: client.backfill(backfill_id))
            timed(f"`--wait` poll with {len(records)} runs", lambda: client.backfill(backfill_id, full=False))
    rows.append(("load (1, 5, 15 min) at the end", ", ".join(f"{x:.1f}" for x in os.getloadavg())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=45.0)
    args = parser.parse_args()
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None  # as bench.backfill_rate: comparable figures
    with tempfile.TemporaryDirectory(prefix="autoedit-backfill-cli-", dir=scratch) as work:
        rows = measure(args.videos, args.runs, args.seconds, Path(work))
    lines = [
        "# `autoedit backfill --all` at archive scale: the CLI's job backfill",
        "",
        f"Written by `bench/backfill_cli.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node() or 'host'}, {os.cpu_count()} cores shared with other sessions. {args.videos:,} `videos` "
        "partitions on a SQLite instance (deploy/dagster.local.yaml) in /dev/shm (as bench/backfill_rate.py); "
        "the CLI's client against Dagster's "
        "GraphQL schema in-process "
        f"(no HTTP server); the daemon's iteration stops at {args.runs} runs or {args.seconds:g} s.",
        "",
        "| measure | figure |",
        "| --- | --- |",
        *(f"| {label} | {figure} |" for label, figure in rows),
        "",
    ]
    REPORT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
