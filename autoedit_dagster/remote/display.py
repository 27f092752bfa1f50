"""How the remote commands print what they read: one block per video, a table of videos, a backfill."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from autoedit_dagster.names import ANALYSIS_GROUPS, PROFILE_NAMES

from .errors import one_line


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if epoch else "-"


def group_summary(assets: dict[str, dict[str, Any]]) -> list[str]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, info in assets.items():
        groups.setdefault(info["group"], []).append((name.rsplit("/", 1)[-1], info["state"]))
    order = [*ANALYSIS_GROUPS, *PROFILE_NAMES]
    lines = []
    for group in sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g)):
        members = groups[group]
        done = sum(state == "MATERIALIZED" for _, state in members)
        others = [f"{name} {state}" for name, state in members if state != "MATERIALIZED"]
        lines.append(f"{group}: {done}/{len(members)} materialized" + (f" ({', '.join(others)})" if others else ""))
    return lines


def check_summary(checks: dict[str, dict[str, Any]]) -> list[str]:
    by_asset: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, info in checks.items():
        asset, _, check = name.rpartition(":")
        by_asset.setdefault(asset, []).append((check, info))
    lines = []
    for asset, items in sorted(by_asset.items()):
        passed = sum(info["passed"] is True for _, info in items)
        bad = [f"{check} {info['status']} ({info['severity']}: {info['description']})" for check, info in items
               if info["passed"] is not True]  # fmt: skip
        lines.append(f"{asset}: {passed}/{len(items)} passed" + (f"; {'; '.join(bad)}" if bad else ""))
    return lines


def print_video(video: dict[str, Any]) -> None:
    def block(title: str, lines: list[str]) -> None:
        for i, line in enumerate(lines or ["-"]):
            print(f"{title if i == 0 else '':<9}{line}")

    print(f"{'video':<9}{video['video_id']}")
    block(
        "runs",
        [
            f"{r['run_id']}  {r['job']:<12} {r['status']:<9} created {when(r['created'])}"
            + (f", backfill {r['backfill_id']}" if r["backfill_id"] else "")
            for r in video["runs"]
        ],
    )
    block("assets", group_summary(video["assets"]))
    block("checks", check_summary(video["checks"]))
    block(
        "outputs",
        [f"{group}/{label}: {uri}" for group, items in video["outputs"].items() for label, uri in items.items()],
    )
    if video.get("failure"):
        block("reason", [f"{video['failure']['reason']} (run {video['failure']['run_id']})"])


def print_table(videos: list[dict[str, Any]]) -> None:
    rows = [("VIDEO", "LATEST RUN", "JOB", "STATUS", "RENDERED", "CHECKS", "REASON")]
    for video in videos:
        run = video["latest_run"] or {}
        rendered = [p for p in PROFILE_NAMES if video["assets"].get(f"{p}/render", {}).get("state") == "MATERIALIZED"]
        checks = video["checks"].values()
        rows.append(
            (
                video["video_id"],
                run.get("run_id", "-"),
                run.get("job", "-"),
                run.get("status", "-"),
                ",".join(rendered) or "-",
                f"{sum(c['passed'] is True for c in checks)}/{len(checks)}" if checks else "-",
                one_line(video["failure"]["reason"], 80) if video.get("failure") else "",
            )
        )
    if not any(video.get("failure") for video in videos):
        rows = [row[:-1] for row in rows]  # no REASON column when nothing failed
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def status_counts(counts: dict[str, int]) -> str:
    """A job backfill's partitions by their run's status: `3 SUCCESS, 1 FAILURE, 9996 NOT_STARTED`."""
    return ", ".join(f"{count} {status}" for status, count in counts.items()) or "-"


def backfill_progress(info: dict[str, Any]) -> str:
    """One line for a backfill's progress (what `backfill --wait` says on each change)."""
    line = f"backfill {info['backfill_id']}: {info['status']}"
    if info["partitions_by_status"]:
        line += f"; videos: {status_counts(info['partitions_by_status'])}"
    return line


def print_backfill(info: dict[str, Any]) -> None:
    title = f"  ({info['title']})" if info["title"] else ""
    print(f"{'backfill':<9}{info['backfill_id']}  {info['status']}{title}")
    if info.get("job"):
        print(f"{'job':<9}{info['job']}")
    partitions = info["partitions"]
    if partitions is not None:
        shown = ", ".join(partitions[:10]) + (f", ... ({len(partitions)} in all)" if len(partitions) > 10 else "")
        print(f"{'videos':<9}{shown or '-'}")
    if info.get("partitions_by_status"):
        print(f"{'progress':<9}{status_counts(info['partitions_by_status'])}")
    for i, run in enumerate(info["runs"]):
        video = f"  {run['video_id']}" if run.get("video_id") else ""
        print(f"{'runs' if i == 0 else '':<9}{run['run_id']}  {run['job']}  {run['status']}{video}")
    for i, (asset, counts) in enumerate(info["assets"].items()):
        print(
            f"{'assets' if i == 0 else '':<9}{asset}: {counts['materialized']}/{counts['targeted']} materialized, "
            f"{counts['failed']} failed, {counts['in_progress']} in progress"
        )
    if info["error"]:
        print(f"{'error':<9}{' '.join(info['error'].split())[:300]}")
