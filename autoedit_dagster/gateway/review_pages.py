"""The review page's HTML: server-rendered, escaped, readable at 390x844 and on a desktop."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from ..names import EDITOR_EXPORTS, EXPORT_STEM, EXPORT_SUFFIXES, PROFILE_NAMES, review_media_path
from ..review.decisions import Decision
from ..review.listing import VideoRow

STYLE = """
*{box-sizing:border-box}body{font:16px/1.4 system-ui,sans-serif;margin:0;padding:12px;max-width:960px;margin:auto}
header{display:flex;justify-content:space-between;align-items:center;gap:8px}h1{font-size:1.3em;margin:.3em 0}
ul.videos{list-style:none;padding:0;margin:0}
ul.videos li{display:flex;gap:10px;padding:8px 0;border-bottom:1px solid #ddd}
ul.videos img{width:72px;height:128px;object-fit:cover;background:#222;flex:none}
.meta{min-width:0}.name{font-weight:600;overflow-wrap:anywhere}.status{font-size:.9em}
video{width:100%;max-height:70vh;background:#000;aspect-ratio:9/16}img.timeline{width:100%}
.actions form{margin:8px 0}textarea,select,input{width:100%;font:inherit}button{font:inherit;padding:10px 16px}
.ok{color:#176c2b}.bad{color:#a11}nav.pages{margin:12px 0;display:flex;gap:12px}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, body: str, role: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>
<style>{STYLE}</style></head><body><header><h1>{esc(title)}</h1>
<span>{esc(role)} · <a href="/logout">sign out</a></span></header>{body}
<script src="/review/static/review.js" defer></script></body></html>"""


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def media_url(video_id: str, profile: str, name: str) -> str:
    return review_media_path(video_id, profile, name)


def status_text(row: VideoRow) -> str:
    if row.status == "pending":
        text = {None: "queued or running", "waiting": "queued", "done": "queued or running"}.get(row.run, row.run or "")
    elif row.status == "rendered":
        text = "done" + (f" · re-edit {row.run}" if row.run in ("queued", "running", "failed") else "")
    else:
        text = row.status
    if row.status == "quarantined" and row.reason:
        text += f": {row.reason}"
    if row.review:
        text += f" · {row.review}"
    return text


def is_live(row: VideoRow) -> bool:
    """Still moving: the page re-reads its status."""
    return row.status == "pending" or row.run in ("waiting", "queued", "running")


def list_page(rows: Sequence[VideoRow], page_number: int, has_more: bool, role: str) -> str:
    items = []
    for row in rows:
        thumb = (
            f'<img src="{media_url(row.video_id, row.profile, "thumb.jpg")}" alt="" loading="lazy">'
            if row.status == "rendered"
            else '<img alt="">'
        )
        live = f' data-live-status="{esc(row.video_id)}"' if is_live(row) else ""
        items.append(
            f'<li>{thumb}<div class="meta"><a class="name" href="/review/v/{quote(row.video_id)}">{esc(row.name)}</a>'
            f'<div class="status"{live}>{esc(status_text(row))}</div>'
            f"<div>kept {seconds(row.kept_s)} of {seconds(row.source_s)}</div>"
            f"<div>{esc(', '.join(row.profiles))}</div></div></li>"
        )
    nav = []
    if page_number > 1:
        nav.append(f'<a href="/review?page={page_number - 1}">newer</a>')
    if has_more:
        nav.append(f'<a href="/review?page={page_number + 1}">older</a>')
    listing = "".join(items) or "<li>No videos yet.</li>"
    body = f'<ul class="videos">{listing}</ul><nav class="pages">{"".join(nav)}</nav>'
    return page("Review", body, role)


def video_page(
    row: VideoRow,
    profile: str,
    report: dict[str, Any] | None,
    history: Sequence[Decision],
    checks: dict[str, dict[str, Any]],
    operator: bool,
    role: str,
) -> str:
    parts = [f'<p><a href="/review">← all videos</a></p><p class="status">{esc(status_text(row))}</p>']
    if report is not None:
        parts.append(
            f'<video id="render" controls playsinline muted preload="metadata" '
            f'src="{media_url(row.video_id, profile, "final.mp4")}"></video>'
            f"<p>kept {seconds(report.get('output_duration'))} of {seconds(report.get('source_duration'))} "
            f"({esc(report.get('shots'))} shots)</p>"
            f'<img class="timeline" src="{media_url(row.video_id, profile, "timeline.png")}" alt="timeline">'
        )
        downloads = [("render", "final.mp4")] + [(kind, EXPORT_STEM + EXPORT_SUFFIXES[kind]) for kind in EDITOR_EXPORTS]
        links = " · ".join(
            f'<a href="{media_url(row.video_id, profile, name)}" download>{esc(kind)}</a>' for kind, name in downloads
        )
        parts.append(f"<p>Downloads: {links}</p>")
    if checks:
        items = "".join(
            f'<li class="{"ok" if c["passed"] else "bad"}">{esc(name)}: {"passed" if c["passed"] else "FAILED"}'
            f"{'' if c['passed'] or c['severity'] == 'ERROR' else ' (warning)'}</li>"
            for name, c in sorted(checks.items())
        )
        parts.append(f'<h2>Checks</h2><ul class="checks">{items}</ul>')
    if history:
        entries = "".join(
            f'<li><b class="{"ok" if d.decision == "approved" else "bad"}">{esc(d.decision)}</b> '
            f"{esc(d.profile)} by {esc(d.by)} at {esc(d.at[:19])}{': ' + esc(d.note) if d.note else ''}</li>"
            for d in reversed(history)
        )
        parts.append(f"<h2>Decisions</h2><ul>{entries}</ul>")
    if operator and report is not None:
        action = f"/review/v/{quote(row.video_id)}"
        options = "".join(f"<option{' selected' if p == profile else ''}>{p}</option>" for p in PROFILE_NAMES)
        parts.append(
            f'<div class="actions"><form method="post" action="{action}/decision">'
            f'<input type="hidden" name="profile" value="{esc(profile)}">'
            '<button name="decision" value="approved" id="approve">Approve</button></form>'
            f'<form method="post" action="{action}/decision">'
            f'<input type="hidden" name="profile" value="{esc(profile)}">'
            '<label>Note <textarea name="note" rows="2" maxlength="2000"></textarea></label>'
            '<button name="decision" value="rejected" id="reject">Reject with note</button></form>'
            f'<form method="post" action="{action}/reedit">'
            f'<label>Profile <select name="profile">{options}</select></label>'
            '<label>Margin (s) <input name="margin_s" type="number" step="0.05" min="0" max="2" value="0.2"></label>'
            '<label>Detector <select name="cut_on"><option>voice</option><option>loudness</option></select></label>'
            '<button id="reedit">Re-edit</button></form></div>'
        )
    return page(row.name, "".join(parts), role)
