"""Reviewers' decisions: approve or reject a video's render, with a note, by whom and when.

Each decision is its own create-only file under `reviews/<video_id>/` (named by time), so two
reviewers deciding at once both land and none overwrites another; the latest is the verdict.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..names import REVIEWS_PREFIX, review_prefix
from ..resources import MediaStore

Verdict = Literal["approved", "rejected"]
MAX_NOTE = 2000


class Decision(BaseModel):
    video_id: str
    profile: str
    decision: Verdict
    note: str = Field(default="", max_length=MAX_NOTE)
    by: str = Field(description="The token's subject.")
    at: str


def record_decision(
    store: MediaStore, video_id: str, profile: str, decision: Verdict, note: str, by: str, now: datetime | None = None
) -> Decision:
    now = now or datetime.now(UTC)
    made = Decision(
        video_id=video_id, profile=profile, decision=decision, note=note.strip(), by=by,
        at=now.isoformat(timespec="microseconds"),
    )  # fmt: skip
    name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{secrets.token_hex(4)}.json"
    store.create_bytes(review_prefix(video_id) + name, made.model_dump_json(indent=2).encode())
    return made


def decisions_for(store: MediaStore, video_id: str) -> list[Decision]:
    """Oldest first."""
    keys = sorted(obj.key for obj in store.list(review_prefix(video_id)) if obj.key.endswith(".json"))
    return [Decision.model_validate_json(store.read_bytes(key)) for key in keys]


def latest_decisions(store: MediaStore) -> dict[str, Decision]:
    """The verdict per video id: its latest decision (one listing of reviews/)."""
    latest: dict[str, tuple[str, str]] = {}
    for obj in store.list(REVIEWS_PREFIX):
        video_id, _, name = obj.key[len(REVIEWS_PREFIX) :].partition("/")
        if name.endswith(".json") and (video_id not in latest or name > latest[video_id][0]):
            latest[video_id] = (name, obj.key)
    return {vid: Decision.model_validate_json(store.read_bytes(key)) for vid, (_, key) in latest.items()}
