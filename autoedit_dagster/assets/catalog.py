"""`video_catalog`: one row per video across the archive, read from the store."""

import json

import dagster as dg
import polars as pl

from ..names import (
    CATALOG_GROUP,
    PROFILE_NAMES,
    QUARANTINE_PREFIX,
    RENDERS_PREFIX,
    REPORT_NAME,
    UPLOADS_PREFIX,
    is_video_upload,
)
from ..partitions import video_id_for_upload
from ..resources import PARQUET_IO_MANAGER_KEY, MediaStore
from ..review.decisions import latest_decisions

CATALOG_SCHEMA = {
    "video_id": pl.Utf8,
    "upload_key": pl.Utf8,
    "status": pl.Utf8,
    "source_duration_s": pl.Float64,
    "output_duration_s": pl.Float64,
    "seconds_removed": pl.Float64,
    "shots": pl.Int64,
    "profiles": pl.List(pl.Utf8),
    "render_uris": pl.List(pl.Utf8),
    "reason": pl.Utf8,
    "review": pl.Utf8,
    "review_note": pl.Utf8,
    "reviewed_by": pl.Utf8,
}


def build_catalog(store: MediaStore) -> pl.DataFrame:
    """Status per upload: rendered (with its numbers), quarantined (with the reason) or pending,
    and the reviewers' latest verdict (approved/rejected, the note, who).

    Built from what is in the store (reports beside the renders, quarantine records), so it is
    right whatever ran where, and costs one listing per prefix, not one Dagster query per video.
    Both are matched by the upload key they name: a video may still carry a legacy id, and a
    refused upload's record sits beside the owner's under the same id.
    """
    reports: dict[str, list[dict]] = {}
    for obj in store.list(RENDERS_PREFIX):
        if obj.key.endswith("/" + REPORT_NAME):
            report = json.loads(store.read_bytes(obj.key))
            reports.setdefault(report["upload_key"], []).append(report)
    quarantined = {}
    for obj in store.list(QUARANTINE_PREFIX):
        if obj.key.endswith(".json"):
            record = json.loads(store.read_bytes(obj.key))
            if record.get("upload_key"):
                quarantined[record["upload_key"]] = record
    reviews = latest_decisions(store)
    rows = []
    for obj in store.list(UPLOADS_PREFIX):
        if not is_video_upload(obj.key):
            continue
        done = sorted(reports.get(obj.key, []), key=lambda r: r["profile"])
        first = done[0] if done else None
        bad = quarantined.get(obj.key)
        video_id = first["video_id"] if first else bad["video_id"] if bad else video_id_for_upload(obj.key)
        rows.append(
            {
                "video_id": video_id,
                "upload_key": obj.key,
                "status": "rendered" if done else "quarantined" if bad else "pending",
                "source_duration_s": first["source_duration"] if first else None,
                "output_duration_s": first["output_duration"] if first else None,
                "seconds_removed": first["seconds_removed"] if first else None,
                "shots": first["shots"] if first else None,
                "profiles": [r["profile"] for r in done],
                "render_uris": [r["render_uri"] for r in done],
                "reason": bad.get("reason") if bad and not done else None,
                "review": review.decision if (review := reviews.get(video_id)) else None,
                "review_note": review.note if review else None,
                "reviewed_by": review.by if review else None,
            }
        )
    return pl.DataFrame(rows, schema=CATALOG_SCHEMA).sort("video_id")


def markdown_table(table: pl.DataFrame) -> str:
    columns = ["video_id", "status", "source_duration_s", "output_duration_s", "shots", "profiles"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.select(columns).iter_rows():
        cells = [", ".join(v) if isinstance(v, list) else f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset(
    group_name=CATALOG_GROUP,
    io_manager_key=PARQUET_IO_MANAGER_KEY,
    kinds={"polars"},
    deps=[dg.AssetKey([name, "edit_report"]) for name in PROFILE_NAMES],
)
def video_catalog(context: dg.AssetExecutionContext, store: MediaStore) -> pl.DataFrame:
    """One row per uploaded video: status, durations, seconds removed, shots, profiles, output URIs."""
    table = build_catalog(store)
    context.add_output_metadata(
        {
            "videos": table.height,
            "rendered": int((table["status"] == "rendered").sum()),
            "quarantined": int((table["status"] == "quarantined").sum()),
            "approved": int((table["review"] == "approved").sum()),
            "seconds_removed": float(table["seconds_removed"].sum() or 0),
            "preview": dg.MetadataValue.md(markdown_table(table.head(20))),
        }
    )
    return table
