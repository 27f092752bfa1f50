"""Webhook sensors: run-status sensors queue events in the outbox, a delivery sensor sends them.

Nothing here runs inside a pipeline run: a dead subscriber never fails or slows an edit. Queuing
is a create-only write per subscriber keyed by the run, so a repeated tick queues nothing twice.
Each attempt is also reported as an observation of `webhook_deliveries` (its outcome, event and
attempt number as metadata): the UI's history of deliveries, and what `/metrics` counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from ..names import CATALOG_GROUP, TAG_PROFILE, WEBHOOK_DELIVERIES_ASSET
from ..resources import MediaStore
from ..webhooks import events
from ..webhooks.delivery import deliver_due
from ..webhooks.outbox import Attempt, Delivery, enqueue
from ..webhooks.settings import RENDER_FAILED, RENDER_SUCCEEDED, UPLOAD_QUARANTINED, WebhookResource
from .upload_sensor import quarantine_record, video_id_for_run

WEBHOOKS_KEY = "webhooks"
DELIVERIES_ASSET = dg.AssetKey(WEBHOOK_DELIVERIES_ASSET)
deliveries_spec = dg.AssetSpec(
    DELIVERIES_ASSET,
    group_name=CATALOG_GROUP,
    description="Webhook delivery attempts: one observation each (outcome, event, attempt number).",
)


def build_render_succeeded_sensor(
    monitored_jobs: Sequence[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] | None = None,
) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name="webhook_render_succeeded_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=monitored_jobs,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Queues render.succeeded for each profile a successful run published.",
    )
    def webhook_render_succeeded_sensor(
        context: dg.RunStatusSensorContext, store: MediaStore, webhooks: WebhookResource
    ) -> None:
        settings = webhooks.settings()
        run = context.dagster_run
        video_id = video_id_for_run(run.tags)
        if not settings.enabled or video_id is None:
            return
        for profile in events.published_profiles(context.instance, run.run_id):
            checks = events.check_results(context.instance, run.run_id, profile)
            data = events.render_succeeded(store, video_id, profile, run.run_id, checks)
            if data is not None:
                queued = enqueue(store, settings, RENDER_SUCCEEDED, (run.run_id, video_id, profile), data)
                context.log.info(f"{RENDER_SUCCEEDED} {video_id}/{profile}: {len(queued)} delivery(ies) queued")

    return webhook_render_succeeded_sensor


def build_run_failed_sensor(
    monitored_jobs: Sequence[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] | None = None,
) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="webhook_run_failed_sensor",
        monitored_jobs=monitored_jobs,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Queues render.failed and upload.quarantined (with the reason) for a failed video run.",
    )
    def webhook_run_failed_sensor(
        context: dg.RunFailureSensorContext, store: MediaStore, webhooks: WebhookResource
    ) -> None:
        settings = webhooks.settings()
        # The same record the quarantine sensor writes, computed from the same run: the reason
        # does not depend on which of the two sensors ticks first.
        record = quarantine_record(context, store, datetime.now(UTC)) if settings.enabled else None
        if record is None:
            return
        run_id = context.dagster_run.run_id
        failed = events.render_failed(record) | {"profile": context.dagster_run.tags.get(TAG_PROFILE)}
        enqueue(store, settings, RENDER_FAILED, (run_id,), failed)
        quarantined = events.upload_quarantined(record)
        enqueue(store, settings, UPLOAD_QUARANTINED, (run_id, record["quarantine_key"]), quarantined)

    return webhook_run_failed_sensor


def observation(delivery: Delivery, attempt: Attempt) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=DELIVERIES_ASSET,
        metadata={
            "outcome": attempt.outcome,
            "event_type": delivery.event_type,
            "event_id": delivery.event_id,
            "delivery_id": delivery.delivery_id,
            "attempt": attempt.number,
            "status_code": attempt.status_code if attempt.status_code is not None else -1,
            "error": attempt.error or "",
        },
    )


def build_delivery_sensor(minimum_interval_seconds: int = 5) -> dg.SensorDefinition:
    @dg.sensor(
        name="webhook_delivery_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends due webhook deliveries from webhooks/pending/, retrying with exponential backoff.",
    )
    def webhook_delivery_sensor(
        context: dg.SensorEvaluationContext, store: MediaStore, webhooks: WebhookResource
    ) -> dg.SkipReason:
        def report(delivery: Delivery, attempt: Attempt) -> None:
            context.instance.report_runless_asset_event(observation(delivery, attempt))

        made = deliver_due(store, webhooks.settings(), on_attempt=report)
        outcomes = [a.outcome for a in made]
        return dg.SkipReason(
            f"{len(made)} attempt(s): {outcomes.count('delivered')} delivered, "
            f"{outcomes.count('retrying')} to retry, {outcomes.count('gave_up')} given up"
        )

    return webhook_delivery_sensor
