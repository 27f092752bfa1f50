"""A simulated archive on a Dagster instance: videos whose `video_job` ran, without rendering anything.

For the status tests and `bench/archive_scale.py`. Per video it writes what a successful
`video_job` run leaves in the instance: the `videos` partition, a SUCCESS run tagged with it, and
for each of the job's assets a planned and a stored materialization (with the path metadata the
real assets publish), for each render check a planned and a passed evaluation targeting that
materialization (unpartitioned, as the checks record them since the archive change: see
autoedit_dagster/checks/render_checks.py). `queued` more videos get a QUEUED run with its
planned events only (never executed), like the upload sensor's runs waiting for the coordinator.
Event rows are the real event types, so every Dagster query (partition statuses, latest run per
partition, check executions) reads them as it reads real runs.

Seeding writes through the storages' own code (`add_run`, `store_event`: the same rows, indexes,
asset and check summaries), only batched: `batched_writes` hands every write one open transaction
per database, committed every `batch` videos, instead of Dagster's connection and commit per
event (on SQLite also a new engine per event and an alembic-stamped file per run, copied here
from one stamped by the storage itself). ~0.5-0.9 s a video becomes a few ms.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from autoedit_dagster.names import TAG_VIDEO_ID

JOB = "video_job"
LOCATION = "autoedit_dagster.definitions"
PROFILE = "tate"
# video_job's assets (ingest, analysis and the default profile) and the checks of its render.
ASSETS = (
    ("source_video",),
    ("media_analysis",),
    ("shots",),
    ("speech_segments",),
    *(
        (PROFILE, name)
        for name in ("crop_path", "edit_timeline", "render", "previews", "timeline_exports", "edit_report")
    ),
)
RENDER = (PROFILE, "render")
CHECKS = (
    "size_matches_profile",
    "duration_matches_timeline",
    "loudness_on_target",
    "audio_video_in_sync",
    "first_frame_not_black",
)


def video_ids(count: int, start: int = 0) -> list[str]:
    """`count` ids of the 64-bit form (`<slug>-<16 hex>`), distinct for distinct indexes."""
    return [f"archive-{i:06d}-{uuid.UUID(int=i).hex[-16:]}" for i in range(start, start + count)]


def _entry(run_id: str, event_type: DagsterEventType, data: object, when: float) -> EventLogEntry:
    event = DagsterEvent(event_type_value=event_type.value, job_name=JOB, event_specific_data=data)  # type: ignore[arg-type]
    return EventLogEntry(
        error_info=None, level=20, user_message="", run_id=run_id, timestamp=when, job_name=JOB, dagster_event=event
    )


def _planned(run_id: str, video_id: str, when: float) -> list[EventLogEntry]:
    events = [
        _entry(
            run_id,
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            AssetMaterializationPlannedData(dg.AssetKey(list(path)), partition=video_id),
            when,
        )
        for path in ASSETS
    ]
    events += [
        _entry(
            run_id,
            DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
            AssetCheckEvaluationPlanned(asset_key=dg.AssetKey(list(RENDER)), check_name=check),
            when,
        )
        for check in CHECKS
    ]
    return events


def _run(instance: dg.DagsterInstance, video_id: str, status: DagsterRunStatus) -> str:
    run_id = str(uuid.uuid4())
    tags = {"dagster/partition": video_id, TAG_VIDEO_ID: video_id}
    # A queued run names where to launch it from (the workspace's code location, by name).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(LOCATION), "__repository__"), JOB)
    instance.add_run(DagsterRun(job_name=JOB, run_id=run_id, status=status, tags=tags, remote_job_origin=origin))
    return run_id


class _Batch:
    """One open connection in a transaction per database, for the storages' own write code."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.events, self.runs = instance.event_log_storage, instance.run_storage
        self.sqlite = hasattr(self.events, "path_for_shard")  # per-run files (SqliteEventLogStorage)
        self.open: dict[str, tuple[object, object]] = {}
        self.engines: dict[str, object] = {}
        self.template: str | None = None

    def _begin(self, key: str, engine_connect) -> object:  # type: ignore[no-untyped-def]
        if key not in self.open:
            conn = engine_connect()
            if not self.sqlite:  # PostgreSQL engines autocommit: ask for a real transaction
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            self.open[key] = (conn, conn.begin())
        return self.open[key][0]

    def event_connection(self, original, shard: str | None = None) -> Iterator[object]:  # type: ignore[no-untyped-def]
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        if not self.sqlite:
            yield self._begin("events", self.events._engine.connect)
            return
        path = self.events.path_for_shard(shard)
        if shard not in self.events._initialized_dbs and not os.path.exists(path):
            if self.template is None:  # one file created and stamped by the storage itself
                with original("__seed_template__"):
                    pass
                self.template = self.events.path_for_shard("__seed_template__")
            shutil.copyfile(self.template, path)
            self.events._initialized_dbs.add(shard)
        if shard not in self.events._initialized_dbs:
            with original(shard):  # an existing file the storage has not checked yet
                pass
        if shard not in self.engines:
            self.engines[shard] = create_engine(self.events.conn_string_for_shard(shard), poolclass=NullPool)
        yield self._begin(f"events:{shard}", self.engines[shard].connect)  # type: ignore[attr-defined]

    def commit(self) -> None:
        for conn, transaction in self.open.values():
            transaction.commit()  # type: ignore[attr-defined]
            conn.close()  # type: ignore[attr-defined]
        self.open.clear()
        for key in [k for k in self.engines if k != "index"]:  # a run's file is written once
            self.engines.pop(key).dispose()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.commit()
        if self.template:
            os.remove(self.template)
            self.events._initialized_dbs.discard("__seed_template__")


@contextlib.contextmanager
def batched_writes(instance: dg.DagsterInstance) -> Iterator[_Batch]:
    """Every run and event write of `instance` goes through one transaction per database until
    `commit()` (and at the end): the storages' own statements, without a connection per event."""
    batch = _Batch(instance)
    events, runs = batch.events, batch.runs
    original_events, original_runs = events._connect, runs.connect
    original_has_table = events.has_table
    tables: dict[str, bool] = {}
    # SQLite's has_table builds an engine per call, and every check event asks it.
    events.has_table = lambda name: (
        tables.setdefault(name, original_has_table(name)) if name not in tables else tables[name]
    )
    if batch.sqlite:
        events._connect = lambda shard: contextlib.contextmanager(batch.event_connection)(original_events, shard)
    else:
        events._connect = lambda: contextlib.contextmanager(batch.event_connection)(original_events)
    runs_engine = _sqlite_engine(runs) if batch.sqlite else runs._engine
    runs.connect = lambda *args, **kwargs: contextlib.nullcontext(batch._begin("runs", runs_engine.connect))
    try:
        yield batch
        batch.close()
    finally:
        events._connect, runs.connect, events.has_table = original_events, original_runs, original_has_table
        for conn, _ in batch.open.values():
            conn.close()  # type: ignore[attr-defined]


def _sqlite_engine(runs: object) -> object:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if not hasattr(runs, "_seed_engine"):
        runs._seed_engine = create_engine(runs._conn_string, poolclass=NullPool)  # type: ignore[attr-defined]
    return runs._seed_engine  # type: ignore[attr-defined]


def seed_archive(
    instance: dg.DagsterInstance,
    done: Sequence[str],
    queued: Sequence[str] = (),
    storage: str = "/archive",
    batch: int = 200,
) -> None:
    """`done` videos processed by a successful run each, `queued` ones waiting in a QUEUED run,
    written in transactions of `batch` videos."""
    instance.add_dynamic_partitions("videos", [*done, *queued])
    with batched_writes(instance) as writes:
        for start in range(0, len(done), batch):
            _seed_done(instance, done[start : start + batch], storage)
            writes.commit()
        for video_id in queued:
            run_id = _run(instance, video_id, DagsterRunStatus.QUEUED)
            for entry in _planned(run_id, video_id, time.time()):
                instance.event_log_storage.store_event(entry)


def _seed_done(instance: dg.DagsterInstance, done: Sequence[str], storage: str) -> None:
    storage_ = instance.event_log_storage
    for video_id in done:
        run_id = _run(instance, video_id, DagsterRunStatus.SUCCESS)
        when = time.time()
        for entry in _planned(run_id, video_id, when):
            storage_.store_event(entry)
        render_event = None
        for path in ASSETS:
            metadata = {"uri": dg.MetadataValue.path(f"{storage}/work/{video_id}/{'/'.join(path)}.json")}
            if path == RENDER:
                metadata["video"] = dg.MetadataValue.path(f"{storage}/renders/{video_id}/{PROFILE}/final.mp4")
            materialization = dg.AssetMaterialization(dg.AssetKey(list(path)), partition=video_id, metadata=metadata)
            storage_.store_event(
                _entry(run_id, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization), when)
            )
            if path == RENDER:
                render_event = _latest_record_id(instance, path, video_id)
        target = AssetCheckEvaluationTargetMaterializationData(storage_id=render_event, run_id=run_id, timestamp=when)
        for check in CHECKS:
            evaluation = dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(list(RENDER)), check_name=check, passed=True, description=f"{check} ok",
                target_materialization_data=target, metadata={"video_id": video_id},
            )  # fmt: skip
            storage_.store_event(_entry(run_id, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation, when))


def _latest_record_id(instance: dg.DagsterInstance, path: Iterable[str], video_id: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(list(path)), asset_partitions=[video_id]), limit=1
    ).records
    return records[0].storage_id
