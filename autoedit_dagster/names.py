"""The names every layer shares, written down once: profiles, asset groups, job names, run tags,
storage prefixes and the keys built from them, export suffixes and the render checks.

The storage layout is the same under a local root and ``s3://bucket/prefix`` (DESIGN.md
"Storage layout"):

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

Run tags: `autoedit/kind=render` is what the run queue's tag limit counts (deploy/dagster.yaml).
A backfill of assets runs as Dagster's implicit asset job, which has no tags of its own: the
backfill must carry the tag itself, or its runs bypass the limit. The upload sensor tags each run
with the video id and the upload (key and etag) it is for; the run's `source_video` step claims
the id for that upload key (`partitions.claim_video_id`).

Reads no environment variables and imports only the standard library, so the engine, the Dagster
layer and the remote CLI (which has no Dagster) all import it.
"""

import hashlib
from pathlib import PurePosixPath
from typing import NamedTuple
from urllib.parse import quote

# ----------------------------------------------------------------------------- profiles, groups

TATE = "tate"
SQUARE = "square"
YOKO = "yoko"
# The edit profiles: each one an asset group, a job and a folder under renders/<video_id>/.
PROFILE_NAMES = (TATE, SQUARE, YOKO)
REFRAMED_PROFILES = (TATE, SQUARE)  # the profiles with an aspect of their own (`engine.config.PROFILES`)
# What the upload sensor's job renders, and what `autoedit edit` and `autoedit submit` default to.
DEFAULT_PROFILE = TATE

INGEST_GROUP = "ingest"
ANALYSIS_GROUP = "analysis"
CATALOG_GROUP = "catalog"
WEBHOOK_DELIVERIES_ASSET = "webhook_deliveries"  # observed once per delivery attempt
# The groups every profile's chain reads from; `video_job` runs them with the default profile.
ANALYSIS_GROUPS = (INGEST_GROUP, ANALYSIS_GROUP)

VIDEO_JOB = "video_job"  # the upload sensor's job: ingest + analysis + the default profile


def profile_job_name(profile: str) -> str:
    """The job that renders `profile`: the sensor's job for the default profile."""
    return VIDEO_JOB if profile == DEFAULT_PROFILE else render_job_name(profile)


def render_job_name(profile: str) -> str:
    """The job of `profile`'s group alone (analysis loaded, not re-run)."""
    return f"{profile}_job"


def backfill_job_name(profile: str, with_analysis: bool) -> str:
    """The job `autoedit backfill` runs over videos: `profile`'s group, with ingest and analysis
    before it when `with_analysis` (for the default profile that is the sensor's job)."""
    if not with_analysis:
        return render_job_name(profile)
    return VIDEO_JOB if profile == DEFAULT_PROFILE else f"{profile}_video_job"


# ------------------------------------------------------------------------------------- run tags

RENDER_RUN_TAGS = {"autoedit/kind": "render"}
TAG_VIDEO_ID = "autoedit/video_id"
TAG_UPLOAD_KEY = "autoedit/upload_key"
TAG_UPLOAD_ETAG = "autoedit/upload_etag"
TAG_PROFILE = "autoedit/profile"

# ------------------------------------------------------------------------------ storage layout

UPLOADS_PREFIX = "uploads/"
WORK_PREFIX = "work/"
RENDERS_PREFIX = "renders/"
STAGING_PREFIX = "staging/"
IDS_PREFIX = "ids/"
QUARANTINE_PREFIX = "quarantine/"
CATALOG_PREFIX = "catalog/"
REVIEWS_PREFIX = "reviews/"  # reviewers' decisions, one file each: reviews/<video_id>/<time>-<id>.json
WEBHOOKS_PREFIX = "webhooks/"  # the webhook outbox: pending/ and done/ delivery records

# The file a profile's deliverable set is named after; published last, after its companions.
RENDER_NAME = "final.mp4"
REPORT_NAME = "report.json"
THUMBNAIL_NAME = "thumb.jpg"
TIMELINE_PNG_NAME = "timeline.png"
# Editor exports beside a render are this stem plus each format's suffix (`edit.fcpxml`, ...).
EXPORT_STEM = "edit"

# Case-insensitive; what ffmpeg reads and cameras, phones and editors write.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".flv",
        ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".3gp", ".3g2", ".mxf", ".ogv", ".dv",
    }
)  # fmt: skip
# What an edit can be written as: the output's extension (case-insensitive) -> ffmpeg's muxer.
OUTPUT_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
# x264's speed presets, fastest first (`autoedit edit --preset`, `EncodeSettings.preset`).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Browsers, rsync, FTP/SFTP clients and editors write these before renaming to the final name.
PARTIAL_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".filepart", ".swp")


def is_video_upload(key: str) -> bool:
    """True for a finished video file: no hidden/temporary names, a video extension."""
    relative = key[len(UPLOADS_PREFIX) :] if key.startswith(UPLOADS_PREFIX) else key
    parts = PurePosixPath(relative).parts
    # Hidden folders too (.sync/, .Trash/): sync tools stage files there.
    if not parts or any(part.startswith((".", "~")) for part in parts):
        return False
    name = parts[-1].lower()
    if name.endswith(PARTIAL_SUFFIXES):
        return False
    return PurePosixPath(name).suffix in VIDEO_EXTENSIONS


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


def review_media_path(video_id: str, profile: str, name: str) -> str:
    """The gateway's route serving one published render file (`/review/media/...`, authenticated)."""
    return f"/review/media/{quote(video_id)}/{quote(profile)}/{quote(name)}"


def review_prefix(video_id: str) -> str:
    """The folder of reviewers' decisions on a video (append-only: one create-only file each)."""
    return f"{REVIEWS_PREFIX}{video_id}/"


def quarantine_key(video_id: str, refused_upload: str | None = None) -> str:
    """`quarantine/<video_id>.json`; a refused claim on someone else's id gets its own record.

    The owner's record (if any) must not be overwritten by the upload that was turned away, so
    that one is named after the id and a hash of its own key.
    """
    if refused_upload is None:
        return f"{QUARANTINE_PREFIX}{video_id}.json"
    digest = hashlib.sha256(refused_upload.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{QUARANTINE_PREFIX}{video_id}.refused-{digest}.json"


# -------------------------------------------------------------------------------------- exports

EXPORT_SUFFIXES: dict[str, str] = {
    "fcpxml": ".fcpxml",
    "fcp7": ".fcp7.xml",
    "edl": ".edl",
    "otio": ".otio.json",
    "json": ".timeline.json",
}
"""Export format -> file suffix; `json` is the `Timeline` model itself, the others go through OTIO."""

# The editor formats published beside every render (the `timeline_exports` asset).
EDITOR_EXPORTS = ("fcpxml", "fcp7", "edl", "otio")

# ------------------------------------------------------------------------------- render checks


class RenderCheck(NamedTuple):
    """One check on a finished render: a blocking one keeps a bad output from flowing on."""

    name: str
    blocking: bool
    description: str


SIZE_CHECK = RenderCheck("size_matches_profile", True, "Width, height and aspect are the profile's.")
DURATION_CHECK = RenderCheck(
    "duration_matches_timeline", True, "The video lasts as long as the kept ranges, within one frame."
)
SYNC_CHECK = RenderCheck("audio_video_in_sync", True, "Audio and video tracks end within one frame of each other.")
LOUDNESS_CHECK = RenderCheck("loudness_on_target", False, "Integrated loudness within ±1 LU of the profile's target.")
FIRST_FRAME_CHECK = RenderCheck("first_frame_not_black", False, "The first frame is not black.")
RENDER_CHECKS = (SIZE_CHECK, DURATION_CHECK, SYNC_CHECK, LOUDNESS_CHECK, FIRST_FRAME_CHECK)
