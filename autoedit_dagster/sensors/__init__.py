"""Sensors: the upload sensor (uploads/ -> `videos` partitions + runs) and the quarantine sensor.

Reads no environment variables; storage comes from the `store` resource.
"""

from autoedit_dagster.sensors.upload_sensor import (
    UploadCursor,
    build_quarantine_sensor,
    build_upload_sensor,
    default_run_requests,
    plan_uploads,
    video_id_for_run,
)

__all__ = [
    "UploadCursor",
    "build_quarantine_sensor",
    "build_upload_sensor",
    "default_run_requests",
    "plan_uploads",
    "video_id_for_run",
]
