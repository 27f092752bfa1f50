"""The code location: one `Definitions` object for `dagster dev`, the daemon and workspace.yaml.

Environment: AUTOEDIT_STORAGE (a folder, default `.storage/` in the repo, or s3://bucket/prefix),
AWS_ENDPOINT_URL and the AWS_* credentials for S3 (see `resources/media_store.py`).
"""

import dagster as dg

from .assets import ALL_ASSETS
from .checks import build_render_checks
from .engine.config import PROFILES
from .jobs import EXECUTOR, catalog_job, profile_jobs, video_job
from .resources import MediaStore, build_resources
from .schedules import catalog_schedule, retention_job, retention_schedule, sweep_job, temp_sweep_sensor
from .sensors import build_quarantine_sensor, build_upload_sensor

upload_sensor = build_upload_sensor(video_job, minimum_interval_seconds=5)
quarantine_sensor = build_quarantine_sensor()


def build_definitions(store: MediaStore | None = None) -> dg.Definitions:
    """Everything in the code location; `store` defaults to the one AUTOEDIT_STORAGE names."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=[build_render_checks(profile) for profile in PROFILES.values()],
        jobs=[video_job, *profile_jobs.values(), catalog_job, retention_job, sweep_job],
        sensors=[upload_sensor, quarantine_sensor, temp_sweep_sensor],
        schedules=[catalog_schedule, retention_schedule],
        resources=build_resources(store),
        # Also for runs outside the named jobs (UI materializations, backfills of an asset group).
        executor=EXECUTOR,
    )


defs = build_definitions()
