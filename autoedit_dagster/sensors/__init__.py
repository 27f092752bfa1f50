"""Sensors: the upload sensor (uploads/ -> `videos` partitions + runs) and the quarantine sensor.

Reads no environment variables; storage comes from the `store` resource.
"""

from autoedit_dagster.sensors.upload_sensor import (
    TAG_UPLOAD_ETAG,
    TAG_UPLOAD_KEY,
    TAG_VIDEO_ID,
    UPLOADS_PREFIX,
    VIDEO_EXTENSIONS,
    UploadCursor,
    build_quarantine_sensor,
    build_upload_sensor,
    default_run_requests,
    is_video_upload,
    plan_uploads,
    video_id_for_run,
)

__all__ = [
    "TAG_UPLOAD_ETAG",
    "TAG_UPLOAD_KEY",
    "TAG_VIDEO_ID",
    "UPLOADS_PREFIX",
    "VIDEO_EXTENSIONS",
    "UploadCursor",
    "build_quarantine_sensor",
    "build_upload_sensor",
    "default_run_requests",
    "is_video_upload",
    "plan_uploads",
    "video_id_for_run",
]
