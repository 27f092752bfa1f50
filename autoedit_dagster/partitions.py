"""Partitions: one dynamic `videos` key per uploaded file, and the static edit `profiles`.

A video id is ``<slug of the file name>-<8 hex of sha1(upload key)>``: derived from the upload's
store key alone (e.g. ``uploads/Interview 2.MOV`` -> ``interview-2-1a2b3c4d``), so seeing the same
upload again always yields the same id and never a second partition. The slug is for humans; the
hash keeps two uploads with the same name (in different folders, or differing only by extension)
apart. Reads no environment variables.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath

import dagster as dg

videos = dg.DynamicPartitionsDefinition(name="videos")

PROFILE_NAMES = ("tate", "square", "yoko")
profiles = dg.StaticPartitionsDefinition(list(PROFILE_NAMES))

# 48 + "-" + 8 = at most 57 characters: short enough for paths, tags and the UI's partition bar.
_SLUG_MAX = 48
VIDEO_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{8}$")


def slugify(text: str, max_length: int = _SLUG_MAX) -> str:
    """Lower-case ASCII letters, digits and single dashes; accents folded, the rest dropped."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def video_id_for_upload(key: str) -> str:
    """The `videos` partition key for the upload at store key `key` (e.g. ``uploads/a/b.mp4``)."""
    if not key:
        raise ValueError("empty upload key")
    # Hash the exact key bytes: two distinct objects must never share an id.
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    # A name with nothing ASCII in it (e.g. 動画.mp4) still gets a readable, valid id.
    slug = slugify(PurePosixPath(key).stem) or "video"
    return f"{slug}-{digest}"


def is_video_id(value: str) -> bool:
    """True for strings shaped like `video_id_for_upload` output (safe as a path segment)."""
    return bool(VIDEO_ID_RE.match(value)) and len(value) <= _SLUG_MAX + 9
