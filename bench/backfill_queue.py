"""`python -m bench.backfill_queue`: does the production run queue hold its limits under a backfill? -> BACKFILL.md.

Set-up, as production (deploy/README.md) on loopback, everything fresh and removed afterwards:

- the instance: deploy/dagster.yaml (PostgreSQL through the PG* variables, QueuedRunCoordinator,
  run monitoring, run retries, JSON logs) with only its three limits lowered so that they bind on
  tiny clips: `max_concurrent_runs` BENCH_BACKFILL_MAX_RUNS (4), the `autoedit/kind=render` tag
  limit BENCH_BACKFILL_RENDER_RUNS (3), the pools' `default_limit` BENCH_BACKFILL_RENDER_SLOTS (1,
  the `render` pool); a fresh PostgreSQL database (bench.celery_throughput.postgres_databases);
- media on S3: moto's server over HTTP (ThreadedMotoServer, as testsupport/s3_server.py starts it),
  AUTOEDIT_STORAGE=s3://<bucket>/bench/autoedit with AWS_ENDPOINT_URL and fake credentials;
- steps on Celery: AUTOEDIT_EXECUTOR=celery on Redis (BENCH_BACKFILL_REDIS_URL, default
  redis://127.0.0.1:6379/9, flushed), 2 `dagster-celery worker start` workers on both queues
  (bench.celery_throughput.celery_workers);
- `dagster-webserver` and `dagster-daemon run` on workspace.yaml (testsupport.servers.Servers).

BENCH_BACKFILL_PARTITIONS (default 50) clips of 2 s (320x180, lavfi testsrc2 + a tone of their
own) are put under uploads/ in the bucket and become `videos` partitions through the code
location's own `upload_sensor`, evaluated in this process and its dynamic-partition requests
applied (what the daemon does with a tick); its run requests are dropped, and the daemon's copy of
the sensor is stopped over GraphQL before the daemon starts, so the backfill is the only source of
runs. Then ONE backfill of every partition of `video_job` is launched over GraphQL
(`launchPartitionBackfill` with the job's partition set: a job backfill, whose runs carry the job's
tags). BENCH_BACKFILL_MODE=cli launches it with `autoedit backfill --all --with-analysis` instead
(the same job backfill of `video_job`, as an operator types it; it launched an asset backfill of
the same assets before the CLI switched to job backfills).

While it runs, every BENCH_BACKFILL_SAMPLE_S (0.5) s this process reads from the instance: every
run (one query), counting the runs the queue counts as in flight (`ACTIVE_RUN_STATUSES`:
STARTING, STARTED, CANCELING), those tagged `autoedit/kind=render`, and the queued ones; and the
`render` pool (`event_log_storage.get_concurrency_info`): claimed slots and waiting steps. After
the backfill, the event log gives the same quantities without sampling gaps: the most runs
between RUN_STARTING and their end event at once, and the most `render`-pool steps between
STEP_START and their end at once. Exceeding a limit in either view is reported.

BENCH_BACKFILL_TIMEOUT_S (7200) bounds the backfill; BENCH_BACKFILL_KEEP=1 keeps the temporary
folder (logs of the daemon, webserver and workers); BENCH_BACKFILL_REPORT overrides the report
path; BENCH_PGHOST/BENCH_PGPORT/BENCH_PGUSER as in bench.celery_throughput. Processes, the moto
server, the database and the Redis database are cleaned up on success, failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import math
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import yaml
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, FINISHED_STATUSES

from autoedit_dagster.assets.profile_assets import RENDER_POOL
from autoedit_dagster.names import RENDER_RUN_TAGS
from bench.celery_throughput import PGHOST, PGPORT, PGUSER, WORKERS, celery_workers, postgres_databases
from testsupport.s3_server import moto_server
from testsupport.servers import Instance, Servers, binary, make_clip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORT = Path(os.environ.get("BENCH_BACKFILL_REPORT", str(HERE / "BACKFILL.md")))
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"

PARTITIONS = int(os.environ.get("BENCH_BACKFILL_PARTITIONS", "50"))
MAX_RUNS = int(os.environ.get("BENCH_BACKFILL_MAX_RUNS", "4"))
RENDER_RUNS = int(os.environ.get("BENCH_BACKFILL_RENDER_RUNS", "3"))
RENDER_SLOTS = int(os.environ.get("BENCH_BACKFILL_RENDER_SLOTS", "1"))
SAMPLE_S = float(os.environ.get("BENCH_BACKFILL_SAMPLE_S", "0.5"))
TIMEOUT_S = float(os.environ.get("BENCH_BACKFILL_TIMEOUT_S", "7200"))
MODE = os.environ.get("BENCH_BACKFILL_MODE", "job")
KEEP = os.environ.get("BENCH_BACKFILL_KEEP", "0") == "1"
# Not bench.celery_throughput's database 8: that bench may run beside this one, and both flush.
REDIS_URL = os.environ.get("BENCH_BACKFILL_REDIS_URL", "redis://127.0.0.1:6379/9")

JOB = "video_job"
PREFIX = "bench/autoedit"
((RENDER_TAG_KEY, RENDER_TAG_VALUE),) = RENDER_RUN_TAGS.items()
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")
BACKFILL_DONE = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}

REPOSITORIES = """
query BenchRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } partitionSets { name pipelineName } sensors { id name } }
    }
    ... on Error { message }
  }
}
"""
STOP_SENSOR = """
mutation BenchStopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}
"""
LAUNCH_BACKFILL = """
mutation BenchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


# ------------------------------------------------------------------------------------ set-up


def instance_config() -> dict[str, Any]:
    """deploy/dagster.yaml with the three limits lowered; everything else (run monitoring, retries,
    logs, the `{env: PG*}` storage, so the database is named by PGDATABASE) as operators deploy it."""
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    runs = config["concurrency"]["runs"]
    runs["max_concurrent_runs"] = MAX_RUNS
    # Fail loudly if the file's render limit moved: lowering some other limit would measure nothing.
    (render_limit,) = [
        limit for limit in runs["tag_concurrency_limits"]
        if limit["key"] == RENDER_TAG_KEY and limit.get("value") == RENDER_TAG_VALUE
    ]  # fmt: skip
    render_limit["limit"] = RENDER_RUNS
    config["concurrency"]["pools"]["default_limit"] = RENDER_SLOTS
    return config


def process_env(home: Path, database: str, storage: str, endpoint: str) -> dict[str, str]:
    """What every process of the deployment gets (deploy/README.md steps 1-3), and nothing of the caller's
    Dagster, AutoEdit, AWS, Celery or libpq settings."""
    dropped = ("AUTOEDIT_", "DAGSTER_", "AWS_", "CELERY_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        DAGSTER_HOME=str(home),
        PGHOST=PGHOST, PGPORT=str(PGPORT), PGUSER=PGUSER, PGPASSWORD="", PGDATABASE=database,
        AUTOEDIT_STORAGE=storage,
        AUTOEDIT_EXECUTOR="celery",
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_RESULT_BACKEND=REDIS_URL,
        AWS_ENDPOINT_URL=endpoint,
        # testsupport/s3_server.py's fake identity: nothing here can reach a real AWS account.
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY=no_proxy, no_proxy=no_proxy,
    )  # fmt: skip
    return env


@dataclass(frozen=True)
class BenchInstance(Instance):
    """testsupport.servers' Instance with the production environment instead of its local-storage one
    (Servers only needs `root` for the logs and `env()`; `storage` is unused here)."""

    environment: tuple[tuple[str, str], ...] = ()

    def env(self, **extra: str) -> dict[str, str]:
        return {**dict(self.environment), **extra}


@contextlib.contextmanager
def redis_database(url: str) -> Iterator[None]:
    """The Celery broker/backend database, empty before and after (no stale tasks either way)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


def make_clips(folder: Path, count: int) -> list[Path]:
    """`count` clips of 2 s, 320x180, each with a tone of its own (so no two uploads are the same bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make_clip(folder / f"backfill-{i:03d}.mp4", tone=200 + 15 * i) for i in range(count)]


def upload_clips(endpoint: str, bucket: str, clips: Sequence[Path]) -> None:
    """A fresh bucket with the clips under <PREFIX>/uploads/, put there the way a producer does (plain S3)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    for clip in clips:
        client.upload_file(str(clip), bucket, f"{PREFIX}/uploads/{clip.name}")


def register_partitions(instance: dg.DagsterInstance, expected: int, timeout: float = 180.0) -> list[str]:
    """Tick the code location's own upload_sensor until every upload became a `videos` partition.

    The sensor holds files back for its settle window and requests at most 20 per tick, so this
    ticks once a second with the cursor carried over, as the daemon would. Only the partition
    requests are applied: the backfill, not the sensor, must make the runs.
    """
    # Imported here, after os.environ is set: the code location builds its store from AUTOEDIT_STORAGE on import.
    from autoedit_dagster.definitions import defs, upload_sensor

    store = defs.resources["store"]
    cursor: str | None = None
    added: list[str] = []
    deadline = time.monotonic() + timeout
    while len(added) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"upload_sensor registered {len(added)}/{expected} partitions in {timeout:.0f} s")
        result = upload_sensor(dg.build_sensor_context(cursor=cursor, instance=instance, resources={"store": store}))
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or ():
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            added.extend(request.partition_keys)
        cursor = result.cursor
        if len(added) < expected:
            time.sleep(1.0)
    return sorted(instance.get_dynamic_partitions("videos"))


def wait_for_daemon(servers: Servers, instance: dg.DagsterInstance, since: float) -> None:
    """Until the daemons this bench relies on have sent a heartbeat (the daemon has loaded the code)."""
    needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING", "SENSOR"}

    def ready() -> bool:
        beats = instance.get_daemon_heartbeats()
        return all(kind in beats and beats[kind].timestamp >= since for kind in needed)

    servers.wait(ready, "dagster-daemon heartbeats")


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    from autoedit_dagster.remote.client import AutoEditClient

    with AutoEditClient(url, timeout=120.0) as client:
        return client.execute(query, variables)


def ok(answer: dict[str, Any], field_name: str, typename: str) -> dict[str, Any]:
    value = answer[field_name]
    if value.get("__typename") != typename:
        raise RuntimeError(f"{field_name}: {value.get('__typename')}: {value.get('message')}")
    return value


@dataclass(frozen=True)
class Location:
    location: str
    repository: str
    partition_set: str
    upload_sensor_id: str


def find_location(url: str) -> Location:
    nodes = ok(graphql(url, REPOSITORIES), "repositoriesOrError", "RepositoryConnection")["nodes"]
    for node in nodes:
        sets = [s["name"] for s in node["partitionSets"] if s["pipelineName"] == JOB]
        sensors = [s["id"] for s in node["sensors"] if s["name"] == "upload_sensor"]
        if sets and sensors:
            return Location(node["location"]["name"], node["name"], sets[0], sensors[0])
    raise RuntimeError(f"no repository with a {JOB} partition set and an upload_sensor: {nodes}")


def stop_upload_sensor(url: str, location: Location, instance: dg.DagsterInstance) -> None:
    """The daemon would otherwise turn the 50 uploads into 50 sensor runs of their own."""
    answer = ok(graphql(url, STOP_SENSOR, {"id": location.upload_sensor_id}), "stopSensor", "StopSensorMutationResult")
    states = [s for s in instance.all_instigator_state() if s.name == "upload_sensor"]
    if answer["instigationState"]["status"] != "STOPPED" or [s.status.value for s in states] != ["STOPPED"]:
        raise RuntimeError(f"upload_sensor not stopped: {answer}, stored {states}")


def launch_backfill(url: str, location: Location, partitions: Sequence[str], env: dict[str, str]) -> str:
    if MODE == "job":
        params = {
            "selector": {
                "partitionSetName": location.partition_set,
                "repositorySelector": {
                    "repositoryLocationName": location.location,
                    "repositoryName": location.repository,
                },
            },
            "partitionNames": list(partitions),
            "title": f"bench.backfill_queue: {JOB} x {len(partitions)}",
        }
        answer = ok(
            graphql(url, LAUNCH_BACKFILL, {"params": params}), "launchPartitionBackfill", "LaunchBackfillSuccess"
        )
        return answer["backfillId"]
    if MODE == "cli":
        # The project's own command, as an operator types it: a job backfill of video_job.
        done = subprocess.run([binary("autoedit"), "backfill", "--all", "--with-analysis", "--json", "--url", url],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
        return json.loads(done.stdout)["backfill_id"]
    raise ValueError(f"BENCH_BACKFILL_MODE={MODE!r}: expected job or cli")


# ----------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    active: int  # runs in ACTIVE_RUN_STATUSES, all jobs
    render_active: int  # ... of which tagged autoedit/kind=render
    queued: int
    render_queued: int
    finished: int  # backfill runs in a finished status
    claimed: int  # render pool: slots held by a step
    stale: int  # ... held by a run that had already ended before this sample's run read (a leaked slot)
    pending: int  # render pool: steps waiting for a slot (not yet assigned one)
    pool_limit: int | None  # the render pool's limit as the instance reports it
    seconds: float  # how long this sample's reads took


def take_sample(instance: dg.DagsterInstance, backfill_id: str) -> Sample:
    started = time.perf_counter()
    at = time.time()
    # One query for every run: the counts below come from the same snapshot.
    runs = instance.get_runs()
    active = [r for r in runs if r.status in ACTIVE_RUN_STATUSES]
    queued = [r for r in runs if r.status == dg.DagsterRunStatus.QUEUED]
    # Read after the runs: a slot whose run was already finished then was still held after the run ended.
    info = instance.event_log_storage.get_concurrency_info(RENDER_POOL)
    ended = {r.run_id for r in runs if r.status in FINISHED_STATUSES}
    return Sample(
        at=at,
        active=len(active),
        render_active=sum(r.tags.get(RENDER_TAG_KEY) == RENDER_TAG_VALUE for r in active),
        queued=len(queued),
        render_queued=sum(r.tags.get(RENDER_TAG_KEY) == RENDER_TAG_VALUE for r in queued),
        finished=sum(r.tags.get(BACKFILL_TAG) == backfill_id and r.status in FINISHED_STATUSES for r in runs),
        claimed=len(info.claimed_slots),
        stale=sum(slot.run_id in ended for slot in info.claimed_slots),
        pending=info.pending_step_count,
        pool_limit=info.limit,
        seconds=time.perf_counter() - started,
    )


def backfill_finished(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    backfill = instance.get_backfill(backfill_id)
    if backfill is None or backfill.status not in BACKFILL_DONE:
        return False
    unfinished = dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=[s for s in dg.DagsterRunStatus
                                                                         if s not in FINISHED_STATUSES])  # fmt: skip
    return not instance.get_run_ids(unfinished, limit=1)


def sample_backfill(instance: dg.DagsterInstance, backfill_id: str, launched: float) -> list[Sample]:
    """Samples every SAMPLE_S s on a fixed grid (a slow read delays one sample, not the grid) until the
    backfill and all its runs are done."""
    samples: list[Sample] = []
    next_at = time.monotonic()
    last_print = 0.0
    while True:
        sample = take_sample(instance, backfill_id)
        samples.append(sample)
        # The backfill's own status is a few more queries: every 4th sample is often enough.
        if len(samples) % 4 == 0 and backfill_finished(instance, backfill_id):
            return samples
        if time.time() - launched > TIMEOUT_S:
            raise TimeoutError(f"backfill {backfill_id} not finished after {TIMEOUT_S:.0f} s")
        if sample.at - last_print >= 30:
            last_print = sample.at
            print(f"[{sample.at - launched:6.0f} s] runs in flight {sample.active}/{MAX_RUNS} (render "
                  f"{sample.render_active}/{RENDER_RUNS}), queued {sample.queued}, render slots "
                  f"{sample.claimed}/{RENDER_SLOTS} (+{sample.pending} waiting), finished "
                  f"{sample.finished}/{PARTITIONS}", flush=True)  # fmt: skip
        next_at += SAMPLE_S
        now = time.monotonic()
        if next_at < now:  # behind (a slow read): skip the missed slots rather than burst
            next_at = now
        time.sleep(next_at - now)


# ---------------------------------------------------------------------------- event-log view


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end and a start at the same instant do not overlap)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


@dataclass
class RunFacts:
    run_id: str
    job: str
    status: str
    partition: str | None
    render_tagged: bool
    in_backfill: bool
    created: float
    starting: float | None  # RUN_STARTING: the daemon dequeued it
    ended: float | None
    failure: str | None = None
    pool_steps: list[tuple[float, float]] = field(default_factory=list)  # STEP_START -> end, render pool


POOL_STEP_END = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
    dg.DagsterEventType.STEP_SKIPPED,
}
RUN_END = {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}


def pool_step_keys() -> set[str]:
    """Step keys of the ops in the render pool, from the code location (top-level ops: step key = node name)."""
    from autoedit_dagster.definitions import defs

    job = defs.resolve_job_def(JOB)
    return {name for name, node in job.graph.node_dict.items() if getattr(node.definition, "pool", None) == RENDER_POOL}


def run_facts(instance: dg.DagsterInstance, backfill_id: str, pool_steps: set[str]) -> list[RunFacts]:
    facts = []
    wanted = {
        dg.DagsterEventType.RUN_STARTING,
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_RESTARTED,
        *POOL_STEP_END,
        *RUN_END,
    }
    for record in instance.get_run_records():
        run = record.dagster_run
        entries = [e for e in instance.all_logs(run.run_id, of_type=wanted) if e.dagster_event]
        starting = next(
            (e.timestamp for e in entries if e.dagster_event_type == dg.DagsterEventType.RUN_STARTING), None
        )
        ended = next((e.timestamp for e in entries if e.dagster_event_type in RUN_END), None)
        fact = RunFacts(
            run_id=run.run_id,
            job=run.job_name,
            status=run.status.value,
            partition=next((run.tags[t] for t in PARTITION_TAGS if t in run.tags), None),
            render_tagged=run.tags.get(RENDER_TAG_KEY) == RENDER_TAG_VALUE,
            in_backfill=run.tags.get(BACKFILL_TAG) == backfill_id,
            created=record.create_timestamp.timestamp(),
            starting=starting,
            ended=ended,
        )
        opened: dict[str, float] = {}
        for entry in entries:
            if entry.step_key not in pool_steps:
                continue
            kind = entry.dagster_event_type
            if kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED):
                opened[entry.step_key] = entry.timestamp
            elif kind in POOL_STEP_END and entry.step_key in opened:
                fact.pool_steps.append((opened.pop(entry.step_key), entry.timestamp))
        if run.status == dg.DagsterRunStatus.FAILURE:
            failures = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_failure]
            message = failures[0].dagster_event.message if failures and failures[0].dagster_event else None
            fact.failure = " ".join((message or "no failure event").split())[:300]
        facts.append(fact)
    return facts


# ------------------------------------------------------------------------------------ report


@dataclass
class Outcome:
    partitions: list[str]
    backfill_id: str
    backfill_status: str
    backfill_ended: float | None  # when the backfill daemon marked it finished
    launched: float
    samples: list[Sample]
    facts: list[RunFacts]
    pool_after: tuple[int, int]  # (claimed, pending) right after the backfill ended
    pool_after_monitoring: tuple[int, int] | None  # the same after run monitoring's free_slots_after_run_end
    limits_seen: dict[str, Any]  # what the loaded instance reports, not what this file asked for
    setup_s: float
    load: tuple[float, float, float]


def limit_rows(o: Outcome) -> list[tuple[str, int, int, int]]:
    """(what, most sampled, most from the event log, limit)."""
    in_flight = [(f.starting, f.ended or o.samples[-1].at) for f in o.facts if f.starting]
    render = [(f.starting, f.ended or o.samples[-1].at) for f in o.facts if f.starting and f.render_tagged]
    steps = [interval for f in o.facts for interval in f.pool_steps]
    return [
        ("runs in flight (STARTING/STARTED/CANCELING), all jobs", max(s.active for s in o.samples),
         max_overlap(in_flight), MAX_RUNS),
        (f"runs in flight tagged `{RENDER_TAG_KEY}={RENDER_TAG_VALUE}`", max(s.render_active for s in o.samples),
         max_overlap(render), RENDER_RUNS),
        (f"`{RENDER_POOL}` pool: claimed slots (sampled) / render steps running (event log)",
         max(s.claimed for s in o.samples), max_overlap(steps), RENDER_SLOTS),
    ]  # fmt: skip


def share(samples: Sequence[Sample], predicate: Any) -> str:
    return f"{100 * sum(1 for s in samples if predicate(s)) / len(samples):.0f}%"


def timeline_rows(o: Outcome) -> list[str]:
    """The samples in ~20 buckets: maxima per bucket, and the queue and progress at its end."""
    span = o.samples[-1].at - o.launched
    width = max(5, math.ceil(span / 20 / 5) * 5)
    buckets: dict[int, list[Sample]] = {}
    for sample in o.samples:
        buckets.setdefault(int((sample.at - o.launched) // width), []).append(sample)
    rows = []
    for index, group in sorted(buckets.items()):
        last = group[-1]
        rows.append(
            f"| {index * width}-{(index + 1) * width} | {len(group)} | {max(s.active for s in group)} "
            f"| {max(s.render_active for s in group)} | {min(s.queued for s in group)}-{max(s.queued for s in group)} "
            f"| {max(s.claimed for s in group)} | {max(s.pending for s in group)} | {last.finished} |"
        )
    return rows


def write_report(o: Outcome) -> str:
    backfill_runs = [f for f in o.facts if f.in_backfill]
    other_runs = [f for f in o.facts if not f.in_backfill]
    succeeded = {f.partition for f in backfill_runs if f.status == "SUCCESS"}
    ends = [f.ended for f in backfill_runs if f.ended]
    wall = (max(ends) - o.launched) if ends else float("nan")
    waits = [f.starting - f.created for f in backfill_runs if f.starting]
    durations = [f.ended - f.starting for f in backfill_runs if f.starting and f.ended]
    gaps = [b.at - a.at for a, b in zip(o.samples, o.samples[1:], strict=False)]
    rows = limit_rows(o)
    exceeded = [what for what, sampled, logged, limit in rows if max(sampled, logged) > limit]
    over_samples = [
        s for s in o.samples if s.active > MAX_RUNS or s.render_active > RENDER_RUNS or s.claimed > RENDER_SLOTS
    ]
    created = [f.created for f in backfill_runs]
    dequeued = [f.starting for f in backfill_runs if f.starting]

    def after(times: Sequence[float]) -> str:
        return f"{min(times) - o.launched:.0f}" if times else "-"

    status_counts: dict[str, int] = {}
    for f in backfill_runs:
        status_counts[f.status] = status_counts.get(f.status, 0) + 1
    seen = o.limits_seen
    how = (
        f"one job backfill of `{JOB}` over all {len(o.partitions)} `videos` partitions, launched with GraphQL "
        "`launchPartitionBackfill` (the job's partition set) on the webserver"
        if MODE == "job"
        else f"`autoedit backfill --all --with-analysis` (a job backfill of `{JOB}` over all {len(o.partitions)} "
        "partitions) against the webserver"
    )
    lines = [
        "# Run queue under a backfill",
        "",
        f"Measured by `python -m bench.backfill_queue` (BENCH_BACKFILL_PARTITIONS={PARTITIONS}, "
        f"BENCH_BACKFILL_MODE={MODE}) on {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Dagster {dg.__version__}, {datetime.fromtimestamp(o.launched, UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{o.load[0]:.1f} / {o.load[1]:.1f} / {o.load[2]:.1f} (1/5/15 min) at the end: other work was running on "
        "the machine, so the times are indicative; the limits are not time-dependent.",
        "",
        "## Set-up",
        "",
        "- Instance: `deploy/dagster.yaml` loaded, three keys lowered so that they bind on tiny clips, written "
        "to a temporary `DAGSTER_HOME`; everything else as deployed (PostgreSQL via the `PG*` variables on a "
        "fresh database, `QueuedRunCoordinator` dequeued by the daemon with 4 threads every 2 s, run monitoring, "
        "one run retry, JSON logs). As the loaded instance reports them: "
        f"`max_concurrent_runs` {seen['max_concurrent_runs']}, tag limits {seen['tag_concurrency_limits']}, "
        f"pool default limit {seen['default_pool_limit']} with `{seen['pool_granularity']}` granularity "
        f"(the `{RENDER_POOL}` pool's limit read back from the event log storage: {seen['render_pool_limit']}).",
        f"- Media: moto's S3 server over HTTP, `AUTOEDIT_STORAGE=s3://<bucket>/{PREFIX}`.",
        f"- Steps: `AUTOEDIT_EXECUTOR=celery` on Redis, {WORKERS} workers started with `dagster-celery worker "
        "start -A dagster_celery.app -y celery.yaml -q dagster,autoedit-render -- --concurrency=1`.",
        "- Processes: `dagster-webserver` and `dagster-daemon run` on `workspace.yaml` (each with its code "
        "server; the daemon's launches the run workers).",
        f"- Clips: {len(o.partitions)} of 2 s, 320x180 (lavfi testsrc2 + a sine tone each), uploaded to "
        "`uploads/` with boto3 and registered as `videos` partitions by ticking the code location's "
        "`upload_sensor` in the bench process (its partition requests applied, its run requests dropped; "
        "the daemon's upload sensor stopped over GraphQL before the daemon started).",
        f"- Backfill: {how}. Set-up before the launch took {o.setup_s:.0f} s.",
        "",
        "## How it was measured",
        "",
        f"- Sampled every {SAMPLE_S} s from the instance from the launch until the backfill and all its runs "
        f"had ended: {len(o.samples)} samples, median gap {statistics.median(gaps) if gaps else 0:.2f} s, "
        f"longest {max(gaps) if gaps else 0:.2f} s; median read {statistics.median(s.seconds for s in o.samples):.3f} "
        "s. Each sample: all runs in one query (`instance.get_runs()`), counting `ACTIVE_RUN_STATUSES` "
        "(STARTING, STARTED, CANCELING: what the queue counts against its limits), the same with the render "
        f"tag, and QUEUED; then `event_log_storage.get_concurrency_info('{RENDER_POOL}')`: claimed slots, "
        "steps waiting for a slot, the pool's limit.",
        "- Afterwards, from the event log (no sampling gaps): the most runs at once between their "
        "RUN_STARTING event (dequeued) and their end event, and the most render-pool steps "
        "(`tate__render`) at once between STEP_START and their end event. A step holds its slot a little "
        "longer than that (claimed before it is submitted to Celery, freed when the run process handles its "
        "end), so the event-log count can only be lower than the slots held, never higher.",
        "",
        "## Results",
        "",
        "| quantity | most, sampled | most, event log | limit | exceeded? |",
        "| --- | ---: | ---: | ---: | --- |",
        *(
            f"| {what} | {sampled} | {logged} | {limit} | {'**yes**' if max(sampled, logged) > limit else 'no'} |"
            for what, sampled, logged, limit in rows
        ),
        "",
        f"- Backfill `{o.backfill_id}`: {o.backfill_status}. Runs (of "
        + ", ".join(f"`{job}`" for job in sorted({f.job for f in backfill_runs}))
        + "): "
        + ", ".join(f"{n} {s}" for s, n in sorted(status_counts.items()))
        + f"; partitions with a successful run: **{len(succeeded)}/{len(o.partitions)}**"
        + (f"; {len(backfill_runs) - len({f.partition for f in backfill_runs})} retries" if backfill_runs else "")
        + ".",
        f"- Wall time, launch to the last run's end: **{wall:.0f} s** ({wall / 60:.1f} min, "
        f"{len(succeeded) / wall * 3600 if wall == wall and wall > 0 else 0:.0f} videos/hour). After the launch: "
        f"first run created at {after(created)} s (the backfill daemon's pickup), first run dequeued at "
        f"{after(dequeued)} s, backfill marked finished at {after([o.backfill_ended] if o.backfill_ended else [])} s.",
        f"- Queue wait (created to dequeued): median {statistics.median(waits) if waits else 0:.0f} s, "
        f"max {max(waits) if waits else 0:.0f} s. Run time (dequeued to end): median "
        f"{statistics.median(durations) if durations else 0:.0f} s, max {max(durations) if durations else 0:.0f} s.",
        f"- Samples over any limit: {len(over_samples)} of {len(o.samples)}. Most render slots held by a run "
        f"that had already ended (a slot not freed): {max(s.stale for s in o.samples)}.",
        f"- At capacity while others waited: runs at `max_concurrent_runs` with runs queued in "
        f"{share(o.samples, lambda s: s.active >= MAX_RUNS and s.queued)} of the samples; render-tagged runs at "
        f"their limit with render runs queued in "
        f"{share(o.samples, lambda s: s.render_active >= RENDER_RUNS and s.render_queued)}; the render pool full "
        f"with steps waiting in {share(o.samples, lambda s: s.claimed >= RENDER_SLOTS and s.pending)}."
        + (
            f" `max_concurrent_runs` ({MAX_RUNS}) could not be reached here: every run in flight carried the "
            f"render tag, whose limit ({RENDER_RUNS}) is lower."
            if RENDER_RUNS < MAX_RUNS and all(s.active == s.render_active for s in o.samples)
            else ""
        ),
        f"- Render pool right after the backfill: {o.pool_after[0]} slot(s) claimed, {o.pool_after[1]} step(s) "
        "waiting"
        + (
            f"; after run monitoring's `free_slots_after_run_end_seconds`: {o.pool_after_monitoring[0]} claimed, "
            f"{o.pool_after_monitoring[1]} waiting"
            if o.pool_after_monitoring
            else ""
        )
        + ".",
        f"- Other runs on the instance during the backfill: {len(other_runs)}"
        + (f" ({', '.join(sorted({f.job for f in other_runs}))})" if other_runs else "")
        + ".",
        "",
        "## Over time",
        "",
        "Seconds after the launch; per bucket the maxima of the samples, the queued range, and the backfill "
        "runs finished by the bucket's last sample.",
        "",
        "| s | samples | runs in flight | render-tagged | queued | render slots claimed | steps waiting | finished |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        *timeline_rows(o),
        "",
        "## Verdict",
        "",
        (
            "No limit was exceeded, in any sample or in the event log."
            if not exceeded and not over_samples
            else "**Limits exceeded**: " + "; ".join(exceeded or ["see the samples over a limit"]) + "."
        )
        + (
            f" {len(succeeded)}/{len(o.partitions)} partitions succeeded."
            if len(succeeded) == len(o.partitions)
            else f" **Only {len(succeeded)}/{len(o.partitions)} partitions succeeded.**"
        )
        + (
            " Render slots were left claimed after the backfill."
            if any(o.pool_after_monitoring or o.pool_after)
            else " No render slot was left claimed."
        ),
    ]
    failed = [f for f in backfill_runs if f.failure]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- `{f.run_id}` ({f.partition}): {f.failure}" for f in failed[:20]]
    lines.append("")
    text = "\n".join(lines)
    REPORT.write_text(text)
    return text


# -------------------------------------------------------------------------------------- main


def limits_seen(instance: dg.DagsterInstance) -> dict[str, Any]:
    config = instance.get_concurrency_config()
    queue = config.run_queue_config
    granularity = config.pool_config.pool_granularity
    return {
        "max_concurrent_runs": queue.max_concurrent_runs if queue else None,
        "tag_concurrency_limits": [dict(t) for t in queue.tag_concurrency_limits] if queue else None,
        "default_pool_limit": config.pool_config.default_pool_limit,
        "pool_granularity": granularity.value if granularity else None,
        "render_pool_limit": instance.event_log_storage.get_concurrency_info(RENDER_POOL).limit,
    }


def pool_state(instance: dg.DagsterInstance) -> tuple[int, int]:
    info = instance.event_log_storage.get_concurrency_info(RENDER_POOL)
    return len(info.claimed_slots), len(info.pending_steps)


def run(workdir: Path) -> Outcome:
    setup_started = time.monotonic()
    clips = make_clips(workdir / "clips", PARTITIONS)
    # celery_workers points the workers' DAGSTER_HOME at workdir/dagster_home_00: use that folder.
    home = workdir / "dagster_home_00"
    home.mkdir()
    with postgres_databases(1) as (database,), moto_server() as endpoint, redis_database(REDIS_URL):
        bucket = f"autoedit-backfill-{uuid.uuid4().hex[:10]}"
        env = process_env(home, database, f"s3://{bucket}/{PREFIX}", endpoint)
        # This process is a client of the same deployment: boto3, the instance and the sensor read the same
        # variables (fake AWS credentials included).
        os.environ.update(env)
        upload_clips(endpoint, bucket, clips)
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(), sort_keys=False))
        # Opening the instance here creates the schema once, before several processes race to.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            limits = limits_seen(instance)
            partitions = register_partitions(instance, PARTITIONS)
            if len(partitions) != PARTITIONS:
                raise RuntimeError(f"expected {PARTITIONS} partitions, found {len(partitions)}")
            steps = pool_step_keys()
            print(f"{PARTITIONS} partitions registered; limits as loaded: {limits}", flush=True)
            bench_instance = BenchInstance(workdir, home, workdir / "unused", tuple(env.items()))
            with celery_workers(env, workdir), Servers(bench_instance) as servers:
                webserver = servers.start_webserver()
                servers.wait_webserver(webserver)
                location = find_location(webserver.url)
                stop_upload_sensor(webserver.url, location, instance)
                daemon_started = time.time()
                servers.start_daemon()
                wait_for_daemon(servers, instance, daemon_started)
                setup_s = time.monotonic() - setup_started
                print(f"set-up done in {setup_s:.0f} s; launching the backfill ({MODE})", flush=True)
                launched = time.time()
                backfill_id = launch_backfill(webserver.url, location, partitions, env)
                try:
                    samples = sample_backfill(instance, backfill_id, launched)
                except BaseException:
                    print(servers.tail(), file=sys.stderr)
                    raise
                pool_after = pool_state(instance)
                pool_after_monitoring = None
                if any(pool_after):
                    # Leaked slots are run monitoring's to free, 30 s after the run ended (deploy/dagster.yaml).
                    time.sleep(40)
                    pool_after_monitoring = pool_state(instance)
                backfill = instance.get_backfill(backfill_id)
                facts = run_facts(instance, backfill_id, steps)
            return Outcome(
                partitions=partitions,
                backfill_id=backfill_id,
                backfill_status=backfill.status.value if backfill else "missing",
                backfill_ended=backfill.backfill_end_timestamp if backfill else None,
                launched=launched,
                samples=samples,
                facts=facts,
                pool_after=pool_after,
                pool_after_monitoring=pool_after_monitoring,
                limits_seen=limits,
                setup_s=setup_s,
                load=os.getloadavg(),
            )


def main() -> None:
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: workers, servers, moto, Redis and the database are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="autoedit-backfill-bench-"))
    try:
        outcome = run(workdir)
    finally:
        if KEEP:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(write_report(outcome))


if __name__ == "__main__":
    main()
