"""What the review page lists: each upload, newest first, with its render's numbers and checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..assets.catalog import build_catalog
from ..names import (
    DEFAULT_PROFILE,
    EDITOR_EXPORTS,
    EXPORT_STEM,
    EXPORT_SUFFIXES,
    RENDER_NAME,
    REPORT_NAME,
    THUMBNAIL_NAME,
    TIMELINE_PNG_NAME,
    UPLOADS_PREFIX,
    render_prefix,
)
from ..resources import MediaStore

RENDER_FILES = (
    RENDER_NAME,
    THUMBNAIL_NAME,
    TIMELINE_PNG_NAME,
    REPORT_NAME,
    *(EXPORT_STEM + EXPORT_SUFFIXES[kind] for kind in EDITOR_EXPORTS),
)
"""The names under renders/<video_id>/<profile>/ the page serves (nothing else is reachable)."""


@dataclass
class VideoRow:
    video_id: str
    name: str
    status: str
    uploaded: float
    profiles: list[str]
    source_s: float | None
    kept_s: float | None
    reason: str | None
    review: str | None
    review_note: str | None
    checks: dict[str, Any] = field(default_factory=dict)
    # Its latest run, when the gateway asked the webserver: waiting (none yet), queued, running,
    # failed or done; None when unknown (the store alone cannot tell queued from running).
    run: str | None = None

    @property
    def profile(self) -> str:
        return DEFAULT_PROFILE if DEFAULT_PROFILE in self.profiles or not self.profiles else self.profiles[0]


def list_videos(store: MediaStore) -> list[VideoRow]:
    """Every upload, newest first."""
    uploaded = {obj.key: obj.mtime for obj in store.list(UPLOADS_PREFIX)}
    rows = [
        VideoRow(
            video_id=r["video_id"],
            name=r["upload_key"][len(UPLOADS_PREFIX) :],
            status=r["status"],
            uploaded=uploaded.get(r["upload_key"], 0.0),
            profiles=r["profiles"] or [],
            source_s=r["source_duration_s"],
            kept_s=r["output_duration_s"],
            reason=r["reason"],
            review=r["review"],
            review_note=r["review_note"],
        )
        for r in build_catalog(store).iter_rows(named=True)
    ]
    return sorted(rows, key=lambda row: (-row.uploaded, row.video_id))


def find_video(store: MediaStore, video_id: str) -> VideoRow | None:
    return next((row for row in list_videos(store) if row.video_id == video_id), None)


def report(store: MediaStore, video_id: str, profile: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.read_bytes(render_prefix(video_id, profile) + REPORT_NAME))
    except FileNotFoundError:
        return None
