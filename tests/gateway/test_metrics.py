"""The instance collector against a real (temporary, SQLite) Dagster instance with real runs."""

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoedit_dagster.gateway.metrics import build_registry

from .upstream_defs import DURATION_S, OUTPUT_S, RENDER_S, SECONDS_REMOVED, run_video


def scrape(registry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def stable(samples: dict) -> dict:
    """Without the timing gauges, which differ from one scrape to the next."""
    return {key: v for key, v in samples.items() if key[0] != "autoedit_metrics_read_seconds"}


def value(samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("instance"))) as test_instance:
        yield test_instance


@pytest.fixture(scope="module")
def runs(instance: dg.DagsterInstance) -> list[dg.ExecuteInProcessResult]:
    """Two finished `video_job` runs, one per video."""
    results = [run_video(instance, f"clip-{n}000abcd") for n in range(2)]
    assert all(result.success for result in results)
    return results


def test_finished_runs_show_in_every_metric(instance, runs) -> None:
    registry, _, _ = build_registry(instance)
    samples = scrape(registry)
    assert value(samples, "autoedit_instance_up") == 1
    assert value(samples, "autoedit_metrics_caught_up") == 1
    assert value(samples, "autoedit_videos_ingested") == 2
    assert value(samples, "autoedit_runs", status="SUCCESS") == 2
    assert value(samples, "autoedit_runs", status="FAILURE") == 0
    assert value(samples, "autoedit_run_queue_depth") == 0
    assert value(samples, "autoedit_run_duration_seconds_count", job="video_job", status="SUCCESS") == 2
    assert value(samples, "autoedit_run_duration_seconds_sum", job="video_job", status="SUCCESS") > 0
    steps = {dict(labels)["step"] for name, labels in samples if name == "autoedit_step_duration_seconds_count"}
    assert steps == {"source_video", "tate__render", "tate__edit_report"}
    assert value(samples, "autoedit_step_duration_seconds_count", step="tate__render", status="SUCCESS") == 2
    assert value(samples, "autoedit_videos_processed_total") == 2
    assert value(samples, "autoedit_video_seconds_processed_total") == 2 * DURATION_S
    assert value(samples, "autoedit_renders_total", profile="tate") == 2
    assert value(samples, "autoedit_render_output_seconds_total", profile="tate") == 2 * OUTPUT_S
    assert value(samples, "autoedit_render_wall_seconds_total", profile="tate") == 2 * RENDER_S
    assert value(samples, "autoedit_video_seconds_removed_total", profile="tate") == 2 * SECONDS_REMOVED
    failed = {"asset": "tate/render", "check": "size_matches_profile", "severity": "ERROR"}
    passed = {"asset": "tate/render", "check": "loudness_on_target", "severity": "WARN"}
    assert value(samples, "autoedit_asset_check_failures_total", **failed) == 2
    assert ("autoedit_asset_check_failures_total", frozenset(passed.items())) not in samples
    assert value(samples, "autoedit_asset_check_evaluations_total", **passed) == 2
    # Scraping again reads only what is new: nothing is counted twice.
    assert stable(scrape(registry)) == stable(samples)


def test_history_is_read_in_bounded_pages_and_a_restart_reports_the_same_totals(instance, runs) -> None:
    registry, _, _ = build_registry(instance, page_size=1, time_budget=0.0)
    first = scrape(registry)
    assert value(first, "autoedit_renders_total", profile="tate") == 1  # one page, then the budget ran out
    assert value(first, "autoedit_metrics_caught_up") == 0
    second = scrape(registry)
    assert value(second, "autoedit_renders_total", profile="tate") == 2
    third = scrape(registry)  # the page that finds nothing more
    assert value(third, "autoedit_metrics_caught_up") == 1
    assert value(third, "autoedit_renders_total", profile="tate") == 2
    restarted, _, collector = build_registry(instance)
    collector.warm_up()
    fresh = scrape(restarted)
    for name in ("autoedit_renders_total", "autoedit_video_seconds_removed_total"):
        assert value(fresh, name, profile="tate") == value(third, name, profile="tate")


def test_an_unreadable_instance_is_reported_not_raised() -> None:
    def broken() -> dg.DagsterInstance:
        raise RuntimeError("database is down")

    registry, _, _ = build_registry(broken)
    samples = scrape(registry)
    assert value(samples, "autoedit_instance_up") == 0


def test_the_code_location_still_emits_what_the_collector_reads() -> None:
    """Every asset and metadata key the collector reads is still emitted (a rename would zero a dashboard panel)."""
    from autoedit_dagster.assets import ingest, profile_assets
    from autoedit_dagster.definitions import defs

    keys = set(defs.resolve_asset_graph().get_all_asset_keys())
    for profile in ("tate", "square", "yoko"):
        assert {dg.AssetKey([profile, "render"]), dg.AssetKey([profile, "edit_report"])} <= keys
    assert dg.AssetKey("source_video") in keys
    assert '"duration_s"' in inspect.getsource(ingest)
    source = inspect.getsource(profile_assets)
    for name in ('"output_s"', '"render_s"', '"seconds_removed"'):
        assert name in source


def test_the_dashboard_only_uses_metrics_that_exist(instance) -> None:
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/autoedit.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bautoedit_[a-z_]+", expr)}
    registry, _, _ = build_registry(instance)
    exposed = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        exposed |= {family.name + suffix for suffix in suffixes}
    assert used and used <= exposed, used - exposed
    assert len(exprs) >= 20
