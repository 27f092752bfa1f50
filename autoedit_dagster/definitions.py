"""The code location: one `Definitions` object for `dagster dev`, the daemon and workspace.yaml.

Environment: AUTOEDIT_STORAGE (a folder, default `.storage/` in the repo, or s3://bucket/prefix),
AWS_ENDPOINT_URL and the AWS_* credentials for S3 (see `resources/media_store.py`);
AUTOEDIT_WEBHOOK_URLS, AUTOEDIT_WEBHOOK_SECRET, AUTOEDIT_WEBHOOK_EVENTS (see `webhooks/settings.py`);
AUTOEDIT_PUBLIC_URL, the gateway's address for the links and pictures in the UI (see `assets/links.py`).
"""

import dagster as dg

from .assets import ALL_ASSETS
from .assets.links import public_base_url
from .checks import build_render_checks
from .engine.config import PROFILES
from .jobs import EXECUTOR, analysis_profile_jobs, catalog_job, profile_jobs, video_job
from .resources import MediaStore, build_resources
from .schedules import catalog_schedule, retention_job, retention_schedule, sweep_job, temp_sweep_sensor
from .sensors import (
    WEBHOOKS_KEY,
    build_catalog_sensor,
    build_delivery_sensor,
    build_quarantine_sensor,
    build_render_succeeded_sensor,
    build_run_failed_sensor,
    build_upload_sensor,
    deliveries_spec,
)
from .webhooks.settings import WebhookResource

# Every 3 s: a burst of 10,000 uploads becomes runs in ~25 min (20 runs a tick, a tick of 1.8-2.9 s on
# either instance) where 5 s took 42; an evaluation over 10,000 files costs the code server ~0.4 s
# (bench/SENSOR_TICK.md, bench/ARCHIVE.md).
upload_sensor = build_upload_sensor(video_job, minimum_interval_seconds=3)
quarantine_sensor = build_quarantine_sensor()
catalog_sensor = build_catalog_sensor()
webhook_sensors = [build_render_succeeded_sensor(), build_run_failed_sensor(), build_delivery_sensor()]


def build_definitions(store: MediaStore | None = None, webhooks: WebhookResource | None = None) -> dg.Definitions:
    """Everything in the code location; `store` defaults to the one AUTOEDIT_STORAGE names, and
    `webhooks` to the subscriptions AUTOEDIT_WEBHOOK_URLS / AUTOEDIT_WEBHOOK_SECRET configure."""
    public_base_url()  # a bad AUTOEDIT_PUBLIC_URL stops the code location loading, with the reason
    return dg.Definitions(
        assets=[*ALL_ASSETS, deliveries_spec],
        asset_checks=[build_render_checks(profile) for profile in PROFILES.values()],
        jobs=[
            video_job,
            *profile_jobs.values(),
            *analysis_profile_jobs.values(),
            catalog_job,
            retention_job,
            sweep_job,
        ],
        sensors=[upload_sensor, quarantine_sensor, catalog_sensor, temp_sweep_sensor, *webhook_sensors],
        schedules=[catalog_schedule, retention_schedule],
        resources={**build_resources(store), WEBHOOKS_KEY: webhooks or WebhookResource.from_env()},
        # Also for runs outside the named jobs (UI materializations, backfills of an asset group).
        executor=EXECUTOR,
    )


defs = build_definitions()
