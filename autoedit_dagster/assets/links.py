"""What the Dagster UI shows of an edit: links that open and pictures that load, as asset metadata.

The UI (Dagster 1.13) renders a markdown entry under 1,000 characters inline and sanitizes it:
an image's `src` must be http(s) or relative (a `data:` URI is dropped), and a local path or a
`file://` link opens nothing in a browser. So the published render files are linked through the
gateway's authenticated route `/review/media/<video_id>/<profile>/<name>` (a local store answers it
with the file, S3 with a fresh presigned redirect, so the link never expires). By default the links
are relative: they load when the UI is opened through the gateway (its login cookie goes with
them). AUTOEDIT_PUBLIC_URL, the gateway's address as browsers reach it (e.g.
https://autoedit.example.com), makes them absolute, for a UI opened on the webserver directly.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import dagster as dg

from ..names import THUMBNAIL_NAME, TIMELINE_PNG_NAME, review_media_path

PUBLIC_URL_ENV = "AUTOEDIT_PUBLIC_URL"
# How wide the UI shows the pictures, by file name (the gateway scales them down on `?width=`).
PICTURE_WIDTHS = {THUMBNAIL_NAME: 270, TIMELINE_PNG_NAME: 800}


def public_base_url(environ: Mapping[str, str] | None = None) -> str:
    """The gateway's public base URL without a trailing slash ("" when unset: relative links)."""
    env = os.environ if environ is None else environ
    value = (env.get(PUBLIC_URL_ENV) or "").strip().rstrip("/")
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ValueError(f"{PUBLIC_URL_ENV}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError(
            f"{PUBLIC_URL_ENV} must be the gateway's http(s) address such as https://autoedit.example.com "
            f"(no credentials), not {value!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{PUBLIC_URL_ENV} takes no query string or fragment: {value!r}")
    return value


def media_url(video_id: str, profile: str, name: str, base: str | None = None, width: int | None = None) -> str:
    """The URL a browser opens a published render file at (through the gateway); a picture scaled
    down to `width` pixels (the UI's markdown cannot size an image: a 1080x1920 thumbnail would
    fill the page)."""
    url = (public_base_url() if base is None else base) + review_media_path(video_id, profile, name)
    return url + (f"?width={width}" if width else "")


def picture(alt: str, video_id: str, profile: str, name: str) -> dg.MetadataValue:
    """A published picture the UI shows inline (markdown well under its 1,000-character inline limit)."""
    return dg.MetadataValue.md(f"![{alt}]({media_url(video_id, profile, name, width=PICTURE_WIDTHS.get(name))})")


def folded_command(command: Sequence[str]) -> dg.MetadataValue:
    """The ffmpeg command kept in full, one option per line, folded away: the UI shows markdown over
    1,000 characters behind "[Show Markdown]" (a render's command, with its input whitelist and
    filter graph, runs well over that). Its raw HTML is not rendered, so no `<details>`."""
    lines: list[str] = []
    args = list(command)
    i = 0
    while i < len(args):
        pair = i + 1 < len(args) and args[i].startswith("-") and not args[i + 1].startswith("-")
        lines.append(shlex.join(args[i : i + 2]) if pair else shlex.quote(args[i]))
        i += 2 if pair else 1
    text = " \\\n  ".join(lines)
    fence = "```"
    while fence in text:  # longer than any run of backticks in the command
        fence += "`"
    return dg.MetadataValue.md(f"{fence}sh\n{text}\n{fence}")
