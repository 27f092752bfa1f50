"""Prometheus metrics: the Dagster instance read at each scrape, and the gateway's own traffic.

Served by the gateway at `/metrics` (`gateway.py`). The instance is the one DAGSTER_HOME names
(its dagster.yaml: SQLite locally, PostgreSQL in production); without DAGSTER_HOME only the
gateway's metrics and `autoedit_instance_up 0` are exposed.

State of the instance, re-read at every scrape (one count query per run status, one for the
queue's oldest run, one for the partition list):

    autoedit_instance_up                        1 when the last read of the instance succeeded
    autoedit_videos_ingested                    keys of the `videos` dynamic partition
    autoedit_runs{status}                       runs by status (QUEUED, STARTED, SUCCESS, ...)
    autoedit_run_queue_depth                    QUEUED runs
    autoedit_run_queue_oldest_age_seconds       age of the oldest QUEUED run (0 when none)

History, accumulated from each run when it finishes (SUCCESS, FAILURE or CANCELED), read
incrementally: a cursor over the run-status events, at most `page_size` runs per query and a
time budget per scrape, so a scrape stays bounded on an instance with a long history:

    autoedit_run_duration_seconds{job,status}           histogram, start to end of each run
    autoedit_step_duration_seconds{step,status}         histogram, from the run's step stats
    autoedit_videos_processed_total                     `source_video` materializations
    autoedit_video_seconds_processed_total              their `duration_s` metadata, summed
    autoedit_video_seconds_removed_total{profile}       `<profile>/edit_report` `seconds_removed`
    autoedit_renders_total{profile}                     `<profile>/render` materializations
    autoedit_render_output_seconds_total{profile}       their `output_s` (seconds of video rendered)
    autoedit_render_wall_seconds_total{profile}         their `render_s` (wall time spent rendering)
    autoedit_asset_check_evaluations_total{asset,check,severity}
    autoedit_asset_check_failures_total{asset,check,severity}
    autoedit_webhook_deliveries_total{outcome}          attempts (observations of `webhook_deliveries`)

These are functions of the instance's history, not of the process: a restarted gateway (or a
second replica) reports the same totals once it has read the history again, so `rate()` sees no
reset. With several replicas, aggregate them with `max`, not `sum`. Render throughput is
`rate(autoedit_renders_total[1h])` (renders) or `rate(autoedit_render_output_seconds_total[1h])`
(seconds of video), and the render speed `rate(..._output_seconds_total) / rate(..._wall_seconds_total)`.

The gateway's own: `autoedit_gateway_requests_total{route,method,status,role}`,
`autoedit_gateway_request_duration_seconds{route}` (to the response headers),
`autoedit_gateway_auth_failures_total{reason}`, `autoedit_gateway_upstream_errors_total{kind}`,
`autoedit_gateway_ratelimit_backend_errors_total`, `autoedit_gateway_websockets_open`,
`autoedit_gateway_uploads_total{outcome}` and `autoedit_gateway_upload_bytes_total{outcome}`
(`POST /uploads`: stored, too_large, refused, aborted).
Labels never carry video ids, run ids or token subjects: their number stays bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from autoedit_dagster.names import WEBHOOK_DELIVERIES_ASSET

log = logging.getLogger("autoedit.metrics")

VIDEOS_PARTITIONS = "videos"
SOURCE_VIDEO = dg.AssetKey("source_video")
DELIVERIES = dg.AssetKey(WEBHOOK_DELIVERIES_ASSET)
RUN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
STEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
FINISHED = {
    dg.DagsterEventType.RUN_SUCCESS: "SUCCESS",
    dg.DagsterEventType.RUN_FAILURE: "FAILURE",
    dg.DagsterEventType.RUN_CANCELED: "CANCELED",
}
RUN_EVENTS = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}


class _Histogram:
    """Bucket counts per label tuple, kept here so they can be rebuilt from the instance."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.bounds) + 1))
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        counts[index] += 1
        self.sums[labels] += value

    def merge(self, other: _Histogram) -> None:
        for labels, counts in other.counts.items():
            mine = self.counts.setdefault(labels, [0] * (len(self.bounds) + 1))
            for i, n in enumerate(counts):
                mine[i] += n
            self.sums[labels] += other.sums[labels]

    def family(self, name: str, doc: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=label_names)
        for labels, counts in sorted(self.counts.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric(list(labels), buckets, self.sums[labels])
        return family


@dataclass
class _History:
    """Everything accumulated from finished runs; one page is built apart, then merged."""

    runs: _Histogram = field(default_factory=lambda: _Histogram(RUN_BUCKETS))
    steps: _Histogram = field(default_factory=lambda: _Histogram(STEP_BUCKETS))
    counters: dict[str, dict[tuple[str, ...], float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )

    def add(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self.counters[name][labels] += value

    def merge(self, page: _History) -> None:
        self.runs.merge(page.runs)
        self.steps.merge(page.steps)
        for name, series in page.counters.items():
            for labels, value in series.items():
                self.counters[name][labels] += value


# name -> (help, label names); every counter the history keeps, exposed even before its first sample.
COUNTERS: dict[str, tuple[str, list[str]]] = {
    "autoedit_videos_processed": ("source_video materializations (videos ingested and probed).", []),
    "autoedit_video_seconds_processed": ("Seconds of source video ingested (source_video duration_s).", []),
    "autoedit_video_seconds_removed": ("Seconds cut out of the sources (edit_report seconds_removed).", ["profile"]),
    "autoedit_renders": ("Render materializations.", ["profile"]),
    "autoedit_render_output_seconds": ("Seconds of edited video rendered (render output_s).", ["profile"]),
    "autoedit_render_wall_seconds": ("Wall-clock seconds spent rendering (render render_s).", ["profile"]),
    "autoedit_asset_check_evaluations": ("Asset check evaluations.", ["asset", "check", "severity"]),
    "autoedit_asset_check_failures": ("Asset check evaluations that did not pass.", ["asset", "check", "severity"]),
    "autoedit_webhook_deliveries": ("Webhook delivery attempts by outcome.", ["outcome"]),
}


def _number(metadata: dict, key: str) -> float | None:
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class InstanceCollector(Collector):
    """Reads the Dagster instance when Prometheus scrapes (see the module docstring for the metrics)."""

    def __init__(
        self,
        instance: dg.DagsterInstance | Callable[[], dg.DagsterInstance],
        page_size: int = 200,
        time_budget: float = 5.0,
    ) -> None:
        self._factory = instance if callable(instance) else (lambda: instance)
        self._instance: dg.DagsterInstance | None = None
        self.page_size = page_size
        self.time_budget = time_budget
        self._lock = threading.Lock()
        self._cursors: dict[dg.DagsterEventType, str | None] = dict.fromkeys(FINISHED)
        self._deliveries_cursor: str | None = None
        self._history = _History()
        self._gauges: list[Metric] = []
        self._up = 0
        self._caught_up = 0
        self._read_seconds = 0.0

    # Reading the instance -------------------------------------------------------------------

    def _get_instance(self) -> dg.DagsterInstance:
        if self._instance is None:
            self._instance = self._factory()
        return self._instance

    def refresh(self, budget: float | None = None) -> None:
        """Read what changed since the last call; stops paging after `budget` seconds (None: no limit)."""
        started = time.monotonic()
        deadline = None if budget is None else started + budget
        try:
            instance = self._get_instance()
            self._gauges = self._read_gauges(instance)
            self._caught_up = int(self._read_history(instance, deadline))
            self._up = 1
        except Exception:
            self._up = 0
            log.exception("reading the Dagster instance for /metrics failed")
        self._read_seconds = time.monotonic() - started

    def close(self) -> None:
        """Release the instance (its database connections), unless a read is still busy with it."""
        if not self._lock.acquire(timeout=self.time_budget):
            return
        try:
            if self._instance is not None:
                self._instance.dispose()
                self._instance = None
        finally:
            self._lock.release()

    def warm_up(self) -> None:
        """Read the whole history now (the gateway starts this in a thread, before the first scrape)."""
        with self._lock:
            self.refresh(budget=None)

    def _read_gauges(self, instance: dg.DagsterInstance) -> list[Metric]:
        videos = GaugeMetricFamily("autoedit_videos_ingested", "Keys of the `videos` dynamic partition.")
        videos.add_metric([], len(instance.get_dynamic_partitions(VIDEOS_PARTITIONS)))
        runs = GaugeMetricFamily("autoedit_runs", "Runs in the instance by status.", labels=["status"])
        queued = 0
        for status in dg.DagsterRunStatus:
            count = instance.get_runs_count(dg.RunsFilter(statuses=[status]))
            runs.add_metric([status.value], count)
            if status == dg.DagsterRunStatus.QUEUED:
                queued = count
        depth = GaugeMetricFamily("autoedit_run_queue_depth", "Runs waiting in the run queue (QUEUED).")
        depth.add_metric([], queued)
        age = 0.0
        if queued:
            oldest = instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=1, ascending=True
            )
            if oldest and oldest[0].create_timestamp:
                created = oldest[0].create_timestamp
                created = created if created.tzinfo else created.replace(tzinfo=UTC)
                age = max(0.0, (datetime.now(UTC) - created).total_seconds())
        oldest_age = GaugeMetricFamily(
            "autoedit_run_queue_oldest_age_seconds", "Seconds the oldest QUEUED run has waited (0 when none)."
        )
        oldest_age.add_metric([], age)
        return [videos, runs, depth, oldest_age]

    def _read_history(self, instance: dg.DagsterInstance, deadline: float | None) -> bool:
        """Page through newly finished runs; True when nothing is left to read."""
        for event_type, status in FINISHED.items():
            while True:
                result = instance.fetch_run_status_changes(
                    event_type, limit=self.page_size, cursor=self._cursors[event_type], ascending=True
                )
                if result.records:
                    page = self._read_runs(instance, [r.run_id for r in result.records], status)
                    self._history.merge(page)  # only whole pages count, so a failure never counts twice
                self._cursors[event_type] = result.cursor or self._cursors[event_type]
                if not result.has_more:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    return False
        return self._read_deliveries(instance, deadline)

    def _read_deliveries(self, instance: dg.DagsterInstance, deadline: float | None) -> bool:
        """Count the webhook delivery attempts observed since the last read, by outcome."""
        while True:
            result = instance.fetch_observations(
                DELIVERIES, limit=self.page_size, cursor=self._deliveries_cursor, ascending=True
            )
            page = _History()
            for record in result.records:
                observation = record.asset_observation
                outcome = observation.metadata.get("outcome") if observation is not None else None
                page.add("autoedit_webhook_deliveries", (str(getattr(outcome, "value", outcome)),), 1)
            self._history.merge(page)
            self._deliveries_cursor = result.cursor or self._deliveries_cursor
            if not result.has_more:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False

    def _read_runs(self, instance: dg.DagsterInstance, run_ids: list[str], status: str) -> _History:
        page = _History()
        records = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))}
        for run_id in dict.fromkeys(run_ids):
            record = records.get(run_id)
            if record is None:  # deleted since it finished
                continue
            if record.start_time is not None and record.end_time is not None:
                page.runs.observe((record.dagster_run.job_name, status), max(0.0, record.end_time - record.start_time))
            for step in instance.get_run_step_stats(run_id):
                if step.start_time is not None and step.end_time is not None:
                    step_status = step.status.value if step.status is not None else "UNKNOWN"
                    page.steps.observe((step.step_key, step_status), max(0.0, step.end_time - step.start_time))
            for event in instance.get_records_for_run(run_id, of_type=RUN_EVENTS).records:
                self._count_event(page, event)
        return page

    @staticmethod
    def _count_event(page: _History, record: dg.EventLogRecord) -> None:
        materialization = record.asset_materialization
        if materialization is not None:
            key, metadata = materialization.asset_key, materialization.metadata
            if key == SOURCE_VIDEO:
                page.add("autoedit_videos_processed", (), 1)
                if (seconds := _number(metadata, "duration_s")) is not None:
                    page.add("autoedit_video_seconds_processed", (), seconds)
            elif len(key.path) == 2 and key.path[1] == "render":
                profile = (key.path[0],)
                page.add("autoedit_renders", profile, 1)
                if (seconds := _number(metadata, "output_s")) is not None:
                    page.add("autoedit_render_output_seconds", profile, seconds)
                if (seconds := _number(metadata, "render_s")) is not None:
                    page.add("autoedit_render_wall_seconds", profile, seconds)
            elif len(key.path) == 2 and key.path[1] == "edit_report":
                seconds = _number(metadata, "seconds_removed")
                if seconds is not None:
                    page.add("autoedit_video_seconds_removed", (key.path[0],), seconds)
            return
        dagster_event = record.event_log_entry.dagster_event
        evaluation = dagster_event.event_specific_data if dagster_event is not None else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            labels = (evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.severity.value)
            page.add("autoedit_asset_check_evaluations", labels, 1)
            if not evaluation.passed:
                page.add("autoedit_asset_check_failures", labels, 1)

    # Prometheus ----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        # A scrape never waits longer than the budget: while another read holds the lock (the
        # warm-up), it answers with what has been read so far.
        if self._lock.acquire(timeout=self.time_budget):
            try:
                self.refresh(budget=self.time_budget)
            finally:
                self._lock.release()
        up = GaugeMetricFamily("autoedit_instance_up", "1 when the last read of the Dagster instance succeeded.")
        up.add_metric([], self._up)
        yield up
        caught_up = GaugeMetricFamily(
            "autoedit_metrics_caught_up", "1 when every finished run has been read into the history metrics."
        )
        caught_up.add_metric([], self._caught_up)
        yield caught_up
        read = GaugeMetricFamily("autoedit_metrics_read_seconds", "Time the last read of the instance took.")
        read.add_metric([], self._read_seconds)
        yield read
        yield from self._gauges
        history = self._history
        yield history.runs.family(
            "autoedit_run_duration_seconds", "Run duration, start to end, of finished runs.", ["job", "status"]
        )
        yield history.steps.family(
            "autoedit_step_duration_seconds",
            "Step duration in finished runs (from the step stats).",
            ["step", "status"],
        )
        for name, (doc, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=label_names)
            series = history.counters.get(name, {})
            if not label_names and not series:
                family.add_metric([], 0.0)
            for labels, value in sorted(series.items()):
                family.add_metric(list(labels), value)
            yield family


class GatewayMetrics:
    """The gateway's request counters and latency histograms, on its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "autoedit_gateway_requests", "Requests answered by the gateway.",
            ["route", "method", "status", "role"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "autoedit_gateway_request_duration_seconds", "Time to the response headers, upstream included.",
            ["route"], buckets=REQUEST_BUCKETS, registry=registry,
        )  # fmt: skip
        self.auth_failures = Counter(
            "autoedit_gateway_auth_failures", "Requests refused for their token.", ["reason"], registry=registry
        )
        self.uploads = Counter(
            "autoedit_gateway_uploads", "`POST /uploads` by outcome (stored, too_large, refused, aborted).",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.upload_bytes = Counter(
            "autoedit_gateway_upload_bytes", "Bytes received by `POST /uploads`, by outcome.", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "autoedit_gateway_upstream_errors", "Upstream failures answered with 502.", ["kind"], registry=registry
        )
        self.ratelimit_errors = Counter(
            "autoedit_gateway_ratelimit_backend_errors",
            "Rate-limit checks that failed (Redis unreachable): the request was let through.",
            registry=registry,
        )
        self.websockets = Gauge("autoedit_gateway_websockets_open", "Proxied websockets open.", registry=registry)


def build_registry(
    instance: dg.DagsterInstance | Callable[[], dg.DagsterInstance] | None,
    page_size: int = 200,
    time_budget: float = 5.0,
) -> tuple[CollectorRegistry, GatewayMetrics, InstanceCollector | None]:
    """A registry with the gateway's metrics and, when an instance is given, the instance collector."""
    registry = CollectorRegistry()
    gateway = GatewayMetrics(registry)
    collector = None
    if instance is not None:
        collector = InstanceCollector(instance, page_size=page_size, time_budget=time_budget)
        registry.register(collector)
    else:
        registry.register(_NoInstance())
    return registry, gateway, collector


class _NoInstance(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("autoedit_instance_up", "1 when the last read of the Dagster instance succeeded.")
        up.add_metric([], 0)
        yield up
