"""The run launcher: Dagster's default one, plus the run worker health check that run monitoring needs.

`DefaultRunLauncher` (dagster 1.13) starts each run as a child process of the code server and says
`supports_check_run_worker_health = False`, so the monitoring daemon never examines a STARTED run.
A run worker that dies alone is caught by its code server, which marks the run failed; but when
the worker dies together with its server (kill -9 of the process group or container, the OOM
killer, a lost machine), nobody reports it: the run stays STARTED and keeps its `render` pool slot,
so with a limit of one no render ever starts again.

The check, for each STARTED run, every `run_monitoring.poll_interval_seconds`:

1. the code server that launched the run (the run's ``.dagster/grpc_info`` tag) answers: it is
   authoritative. A server restarted at the same address (a new container) no longer knows the
   run, so the run is reported FAILED;
2. it does not answer and it was a local socket server (the daemon's own: `dagster dev`,
   `dagster-daemon run -w workspace.yaml`): the run worker's pid, recorded in the run's
   "Started process" event, is on this machine, so its liveness decides;
3. a server on another host that does not answer: RUNNING (a network blip must not fail live
   runs); once restarted at its address it answers, and case 1 applies.

The monitoring daemon then marks a dead run failed; `run_retries` may re-launch it and
`free_slots_after_run_end_seconds` later frees its pool slots. Reads no environment variables.

Uses Dagster internals (the gRPC client and the launcher's health-result types): there is no
public API for either; both are stable across 1.x and pinned with dagster==1.13.27.
"""

from __future__ import annotations

import json

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

from autoedit_dagster.engine.tempfiles import process_alive

# A health check must not hold up the daemon's loop over every run in flight.
GRPC_TIMEOUT_SECONDS = 5
STARTED_PROCESS_MESSAGE = "Started process for run"


class MonitoredRunLauncher(dg.DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers the monitoring daemon can check (see module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        info = json.loads(run.tags.get(GRPC_INFO_TAG) or "null")
        if not info:
            # Not launched through a code server (e.g. execute_in_process): nothing to ask.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no code server recorded; not checked")
        client = DagsterGrpcClient(
            port=info.get("port"), socket=info.get("socket"), host=info.get("host"), use_ssl=bool(info.get("use_ssl"))
        )
        where = info.get("socket") or f"{info.get('host')}:{info.get('port')}"
        try:
            answer = client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), GRPC_TIMEOUT_SECONDS)
        except DagsterUserCodeUnreachableError:
            if not info.get("socket"):
                return CheckRunHealthResult(WorkerStatus.RUNNING, f"code server {where} unreachable", transient=True)
            return self._check_local_worker(run, where)
        if deserialize_value(answer, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"code server {where} no longer runs this run's worker")

    def _check_local_worker(self, run: dg.DagsterRun, where: str) -> CheckRunHealthResult:
        started = [
            record
            for record in self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if record.dagster_event is not None
            and (record.dagster_event.message or "").startswith(STARTED_PROCESS_MESSAGE)
        ]
        if not started:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"code server {where} gone; worker pid not recorded yet")
        latest = started[-1]
        metadata = latest.dagster_event.engine_event_data.metadata  # type: ignore[union-attr]
        pid = int(metadata["pid"].value)
        if process_alive(pid, latest.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"code server {where} gone; worker {pid} alive")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"code server {where} and run worker (pid {pid}) are gone")
