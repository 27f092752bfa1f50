"""What each event says: built from the published report, the run's check results and the quarantine record."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from ..names import (
    EDITOR_EXPORTS,
    EXPORT_STEM,
    EXPORT_SUFFIXES,
    RENDER_NAME,
    REPORT_NAME,
    TIMELINE_PNG_NAME,
    render_prefix,
)
from ..resources import MediaStore

URL_LIFETIME_S = 7 * 24 * 3600  # presigned links in an event outlive the retries


def _export_names() -> dict[str, str]:
    return {kind: EXPORT_STEM + EXPORT_SUFFIXES[kind] for kind in EDITOR_EXPORTS}


def check_results(instance: dg.DagsterInstance, run_id: str, profile: str) -> dict[str, dict[str, Any]]:
    """The render checks this run evaluated for `profile`: passed and severity per check."""
    found: dict[str, dict[str, Any]] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and evaluation.asset_key.path[0] == profile:
            found[evaluation.check_name] = {"passed": evaluation.passed, "severity": evaluation.severity.value}
    return found


def latest_render_checks(instance: dg.DagsterInstance, video_id: str, profile: str) -> dict[str, dict[str, Any]]:
    """The checks evaluated in the run of the partition's latest `<profile>/render` ({} if none)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey([profile, "render"]), asset_partitions=[video_id]), limit=1
    ).records
    return check_results(instance, records[0].run_id, profile) if records else {}


def published_profiles(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Profiles whose `<profile>/edit_report` this run materialized (what it published)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    profiles = []
    for record in records:
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key.path[-1] == "edit_report":
            profiles.append(materialization.asset_key.path[0])
    return sorted(set(profiles))


def render_succeeded(
    store: MediaStore, video_id: str, profile: str, run_id: str, checks: dict
) -> dict[str, Any] | None:
    """The `render.succeeded` data for a published render; None if its report is not there."""
    prefix = render_prefix(video_id, profile)
    try:
        report = json.loads(store.read_bytes(prefix + REPORT_NAME))
    except FileNotFoundError:
        return None
    companions = {"timeline_png": TIMELINE_PNG_NAME, "report": REPORT_NAME, **_export_names()}
    return {
        "video_id": video_id,
        "profile": profile,
        "run_id": run_id,
        "upload_key": report["upload_key"],
        "render_url": store.shared_url(prefix + RENDER_NAME, URL_LIFETIME_S),
        "companions": {
            kind: store.shared_url(prefix + name, URL_LIFETIME_S)
            for kind, name in companions.items()
            if store.exists(prefix + name)
        },
        "source_duration_s": report["source_duration"],
        "kept_s": report["output_duration"],
        "removed_s": report["seconds_removed"],
        "checks": checks,
    }


def render_failed(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("video_id", "run_id", "job_name", "upload_key", "reason", "failed_at")
    return {key: record.get(key) for key in keys} | {"steps": [s["step"] for s in record.get("steps", [])]}


def upload_quarantined(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("video_id", "upload_key", "reason", "quarantine_key", "run_id", "failed_at")
    return {key: record.get(key) for key in keys}
