"""The storage layout: every top-level prefix of the store, and the keys built from them, named once.

Same under a local root and ``s3://bucket/prefix`` (DESIGN.md "Storage layout"):

- ``uploads/...``: producers write here; the pipeline only reads. Never modified or deleted.
- ``work/<video_id>/...``: intermediates (the IO managers' tables and values).
- ``renders/<video_id>/<profile>/...``: the published deliverables of one profile, promoted
  together from staging once the blocking checks passed.
- ``staging/<run_id>/<video_id>/<profile>/...``: what one run rendered and has not published
  yet. Anything under ``staging/<run_id>/`` of a run that is no longer queued or in progress is a
  leftover (a crash, a failed check) and may be deleted.
- ``ids/<video_id>.json``: which upload key owns a video id (written once, never replaced).
- ``quarantine/<video_id>.json``: why an input was rejected.
- ``catalog/...``: archive-wide tables.

Reads no environment variables; imports nothing, so every layer can use it.
"""

import hashlib

UPLOADS_PREFIX = "uploads/"
WORK_PREFIX = "work/"
RENDERS_PREFIX = "renders/"
STAGING_PREFIX = "staging/"
IDS_PREFIX = "ids/"
QUARANTINE_PREFIX = "quarantine/"
CATALOG_PREFIX = "catalog/"

# The edit profiles, each a folder under renders/<video_id>/ (the `profiles` partitions).
PROFILE_NAMES = ("tate", "square", "yoko")

# The file a profile's deliverable set is named after; published last, after its companions.
RENDER_NAME = "final.mp4"
REPORT_NAME = "report.json"


def render_prefix(video_id: str, profile: str) -> str:
    """Where the published deliverables of one video and profile live."""
    return f"{RENDERS_PREFIX}{video_id}/{profile}/"


def staging_prefix(run_id: str) -> str:
    """Everything run `run_id` staged; deletable once the run is no longer queued or running."""
    return f"{STAGING_PREFIX}{run_id}/"


def staged_render_prefix(run_id: str, video_id: str, profile: str) -> str:
    """Where run `run_id` writes one profile's deliverables before they are verified and promoted."""
    return f"{staging_prefix(run_id)}{video_id}/{profile}/"


def id_claim_key(video_id: str) -> str:
    """The record naming the upload key that owns `video_id`."""
    return f"{IDS_PREFIX}{video_id}.json"


def quarantine_key(video_id: str, refused_upload: str | None = None) -> str:
    """`quarantine/<video_id>.json`; a refused claim on someone else's id gets its own record.

    The owner's record (if any) must not be overwritten by the upload that was turned away, so
    that one is named after the id and a hash of its own key.
    """
    if refused_upload is None:
        return f"{QUARANTINE_PREFIX}{video_id}.json"
    digest = hashlib.sha256(refused_upload.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{QUARANTINE_PREFIX}{video_id}.refused-{digest}.json"
