"""Partitions: one dynamic `videos` key per uploaded file; who owns a video id.

A video id is ``<slug of the file name>-<16 hex of sha256(upload key)>``: derived from the upload's
store key alone (e.g. ``uploads/Interview 2.MOV`` -> ``interview-2-1a2b3c4d5e6f7a8b``), so seeing
the same upload again always yields the same id and never a second partition. The slug is for
humans; the 64-bit hash keeps two uploads with the same name apart.

Ids made before that carry 32 bits (``<slug>-<8 hex of sha1(upload key)>``): a birthday search
finds two keys sharing one in under a second. Such an id keeps serving the upload that owns it and
is never given to another one: `resolve_video_ids` reuses a legacy id only when its partition
exists *and* belongs to that same upload key.

Ownership is recorded in the store (``ids/<video_id>.json``, written once with a create-if-absent
write, never replaced or deleted): `claim_video_id` is called by every run before it writes
anything for a video, so of two uploads mapping to one id the second is refused, whatever
launched it (the sensor, a queued run from before the upgrade, a hand-made run in the UI). An id
from before claims existed is owned by the upload its stored `source_video` (or a published
report) names. Reads no environment variables.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import PurePosixPath

import dagster as dg

from autoedit_dagster.names import (
    RENDERS_PREFIX,
    REPORT_NAME,
    UPLOADS_PREFIX,
    WORK_PREFIX,
    id_claim_key,
)
from autoedit_dagster.resources.media_store import MediaStore

videos = dg.DynamicPartitionsDefinition(name="videos")

# 40 + "-" + 16 = at most 57 characters, as long as the legacy 48 + "-" + 8: short enough for
# paths, tags and the UI's partition bar.
_HASH_HEX = 16  # 64 bits: a chance collision needs ~4 billion uploads, and a forced one is refused
_SLUG_MAX = 40
_LEGACY_HASH_HEX = 8
_LEGACY_SLUG_MAX = 48
_ID_MAX = _SLUG_MAX + 1 + _HASH_HEX
VIDEO_ID_RE = re.compile(rf"^[a-z0-9]+(?:-[a-z0-9]+)*-(?:[0-9a-f]{{{_HASH_HEX}}}|[0-9a-f]{{{_LEGACY_HASH_HEX}}})$")


class VideoIdTaken(Exception):
    """`upload_key` maps to `video_id`, which already belongs to another upload (`owner`)."""

    def __init__(self, video_id: str, owner: str, upload_key: str) -> None:
        super().__init__(
            f"video id {video_id} belongs to {owner}; refusing {upload_key} so it cannot overwrite that video"
        )
        self.video_id, self.owner, self.upload_key = video_id, owner, upload_key


def slugify(text: str, max_length: int) -> str:
    """Lower-case ASCII letters, digits and single dashes; accents folded, the rest dropped."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def _id(key: str, algorithm: str, hex_digits: int, slug_max: int) -> str:
    if not key:
        raise ValueError("empty upload key")
    # Hash the exact key bytes: two distinct objects must never share an id.
    digest = hashlib.new(algorithm, key.encode("utf-8", "surrogatepass")).hexdigest()[:hex_digits]
    # A name with nothing ASCII in it (e.g. 動画.mp4) still gets a readable, valid id.
    slug = slugify(PurePosixPath(key).stem, slug_max) or "video"
    return f"{slug}-{digest}"


def video_id_for_upload(key: str) -> str:
    """The `videos` partition key a new upload at store key `key` (e.g. ``uploads/a/b.mp4``) gets."""
    return _id(key, "sha256", _HASH_HEX, _SLUG_MAX)


def legacy_video_id_for_upload(key: str) -> str:
    """The 32-bit id earlier versions gave `key`; reused only for the upload that owns it."""
    return _id(key, "sha1", _LEGACY_HASH_HEX, _LEGACY_SLUG_MAX)


def maps_to(key: str, video_id: str) -> bool:
    """True if `video_id` is `key`'s id under either scheme (ownership is a separate question)."""
    return video_id in (video_id_for_upload(key), legacy_video_id_for_upload(key))


def is_video_id(value: str) -> bool:
    """True for strings shaped like a video id of either scheme (safe as a path segment)."""
    return bool(VIDEO_ID_RE.match(value)) and len(value) <= _ID_MAX


# ------------------------------------------------------------------------------------ ownership


def _json_field(store: MediaStore, key: str, name: str) -> str | None:
    try:
        value = json.loads(store.read_bytes(key)).get(name)
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _recorded_owner(store: MediaStore, video_id: str) -> str | None:
    """Who an id from before claims belongs to: its ingested source, else a published report."""
    # The JSON IO manager's key for the `source_video` partition (resources/io_managers.py).
    owner = _json_field(store, f"{WORK_PREFIX}{video_id}/source_video.json", "upload_key")
    if owner is None:
        # Retention may have deleted work/<video_id>/; the reports beside the renders stay.
        for obj in store.list(f"{RENDERS_PREFIX}{video_id}/"):
            if obj.key.endswith("/" + REPORT_NAME) and (owner := _json_field(store, obj.key, "upload_key")):
                break
    return owner


def owner_of(store: MediaStore, video_id: str) -> str | None:
    """The upload key that owns `video_id`, or None if nothing has claimed it yet."""
    return _json_field(store, id_claim_key(video_id), "upload_key") or _recorded_owner(store, video_id)


def claim_video_id(store: MediaStore, video_id: str, upload_key: str, run_id: str | None = None) -> None:
    """Record that `upload_key` owns `video_id`, or raise `VideoIdTaken` if another upload does.

    Idempotent for the owner. The claim is a create-if-absent write: of two runs racing for one
    id, exactly one wins and the other is refused.
    """
    if not maps_to(upload_key, video_id):
        raise ValueError(f"{upload_key} does not map to video id {video_id}")
    record = {
        "video_id": video_id,
        "upload_key": upload_key,
        "claimed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
    }
    for _ in range(3):
        claimed = _json_field(store, id_claim_key(video_id), "upload_key")
        owner = claimed or _recorded_owner(store, video_id)
        if owner is not None and owner != upload_key:
            raise VideoIdTaken(video_id, owner, upload_key)
        if claimed is not None:
            return
        # Unclaimed, or an id from before claims owned by this upload: write the claim down.
        if store.create_bytes(id_claim_key(video_id), json.dumps(record, indent=2).encode()):
            return
        # Lost a race: read the winner's claim on the next pass.
    raise RuntimeError(f"could not read or write the claim on video id {video_id}")


def resolve_video_ids(store: MediaStore, keys: Iterable[str], existing: Iterable[str]) -> dict[str, str]:
    """The id each upload key gets: its legacy id if that partition exists (`existing`) and belongs
    to the same key, else the 64-bit id. A legacy id is never handed to a second upload.
    """
    present = set(existing)
    resolved = {}
    for key in keys:
        legacy = legacy_video_id_for_upload(key)
        keep = legacy in present and owner_of(store, legacy) == key
        resolved[key] = legacy if keep else video_id_for_upload(key)
    return resolved


def uploads_for_video_id(store: MediaStore, video_id: str) -> list[str]:
    """Upload keys that map to `video_id` under either scheme (for runs launched without a tag),
    narrowed to its owner when two uploads share a legacy id and one of them owns it."""
    found = sorted(obj.key for obj in store.list(UPLOADS_PREFIX) if maps_to(obj.key, video_id))
    if len(found) > 1 and (owner := owner_of(store, video_id)) in found:
        return [owner]
    return found
