"""Sensors: the upload sensor (uploads/ -> `videos` partitions + runs), the quarantine sensor, the
catalog refresh after finished runs, and the webhook sensors.

Reads no environment variables; storage comes from the `store` resource.
"""

from autoedit_dagster.sensors.catalog_sensor import build_catalog_sensor
from autoedit_dagster.sensors.upload_sensor import (
    UploadCursor,
    build_quarantine_sensor,
    build_upload_sensor,
    default_run_requests,
    plan_uploads,
    video_id_for_run,
)
from autoedit_dagster.sensors.webhook_sensors import (
    WEBHOOKS_KEY,
    build_delivery_sensor,
    build_render_succeeded_sensor,
    build_run_failed_sensor,
    deliveries_spec,
)

__all__ = [
    "WEBHOOKS_KEY",
    "UploadCursor",
    "build_catalog_sensor",
    "build_delivery_sensor",
    "build_quarantine_sensor",
    "build_render_succeeded_sensor",
    "build_run_failed_sensor",
    "build_upload_sensor",
    "default_run_requests",
    "deliveries_spec",
    "plan_uploads",
    "video_id_for_run",
]
