"""End to end on real servers: dagster-webserver + dagster-daemon on loopback, driven by the remote CLI.

submit (the upload sensor's run succeeds) -> status --json -> fetch a 1080x1920 MP4 and its exports
-> backfill the `yoko` profile over the video until the backfill completes -> one-line errors.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.partitions import video_id_for_upload
from tests.remote.conftest import Deployment, free_port, make_clip

pytestmark = pytest.mark.timeout(600)

WAIT = "240"  # seconds any one wait may take on a loaded machine; an idle one needs far less


def test_submit_status_fetch_backfill(deployment: Deployment, cli, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOEDIT_STORAGE", str(deployment.storage))
    url = ["--url", deployment.url]
    started = time.monotonic()
    clip = make_clip(tmp_path / "interview.mp4")

    submitted = cli("submit", str(clip), "--wait", "--json", "--timeout", WAIT, *url)
    assert submitted.code == 0, submitted.err + deployment.tail()
    video_id = video_id_for_upload("uploads/interview.mp4")
    result = submitted.json()
    assert (result["video_id"], result["job"], result["status"]) == (video_id, "video_job", "SUCCESS")
    assert (deployment.storage / "uploads" / "interview.mp4").read_bytes() == clip.read_bytes()
    submitted_at = time.monotonic()
    # --wait followed the run: one line per finished step (on stderr), then the render, its checks, the fetch.
    steps = [line.split()[1] for line in submitted.err.splitlines() if line.startswith("step ")]
    assert {"source_video", "media_analysis", "tate__render", "tate__edit_report"} <= set(steps), submitted.err
    assert len(steps) == len(set(steps))
    assert result["render"] == (deployment.storage / "renders" / video_id / "tate" / "final.mp4").as_uri()
    assert result["checks"][0].startswith("tate/render: ") and result["checks"][0].split()[1].endswith("/5")
    assert result["fetch"] == f"autoedit fetch {video_id} -o {video_id}-tate.mp4"

    status = cli("status", video_id, "--json", *url)
    assert status.code == 0, status.err
    video = status.json()
    assert video["latest_run"]["run_id"] == result["run_id"]
    assert video["latest_run"]["status"] == "SUCCESS"
    assert {name: video["assets"][name]["state"] for name in ("source_video", "media_analysis", "tate/render")} == {
        "source_video": "MATERIALIZED", "media_analysis": "MATERIALIZED", "tate/render": "MATERIALIZED",
    }  # fmt: skip
    assert video["assets"]["yoko/render"]["state"] == "MISSING"
    blocking = ("size_matches_profile", "duration_matches_timeline", "audio_video_in_sync")
    for check in blocking:
        assert video["checks"][f"tate/render:{check}"]["passed"] is True, video["checks"]
    render_uri = video["outputs"]["tate"]["video"]
    assert render_uri == (deployment.storage / "renders" / video_id / "tate" / "final.mp4").as_uri()

    listing = cli("status", "--json", *url)
    assert [v["video_id"] for v in listing.json()] == [video_id]

    out = tmp_path / "fetched" / "vertical.mp4"
    fetched = cli("fetch", video_id, "-o", str(out), "--exports", *url)
    assert fetched.code == 0, fetched.err
    info = probe(out)
    assert (info.video_codec, info.width, info.height) == ("h264", 1080, 1920)
    assert info.has_audio
    assert "mp4" in info.container and info.duration > 1.0
    assert ET.parse(out.with_name("vertical.fcpxml")).getroot().tag == "fcpxml"
    assert "TITLE:" in out.with_name("vertical.edl").read_text()
    assert json.loads(out.with_name("vertical.otio.json").read_text())["OTIO_SCHEMA"].startswith("Timeline")

    backfill_at = time.monotonic()
    backfill = cli("backfill", "--videos", video_id, "--profile", "yoko", "--wait", "--json", "--timeout", WAIT, *url)
    assert backfill.code == 0, backfill.err + deployment.tail()
    backfilled_at = time.monotonic()
    info = backfill.json()
    assert info["status"] == "COMPLETED_SUCCESS"
    assert info["partitions"] == [video_id]
    assert [run["status"] for run in info["runs"]] == ["SUCCESS"]
    run = info["runs"][0]
    # A job backfill of yoko_job: one run per video, counted by status.
    assert (info["kind"], info["job"], info["partitions_by_status"]) == ("job", "yoko_job", {"SUCCESS": 1})
    assert (run["job"], run["video_id"]) == ("yoko_job", video_id)

    again = cli("backfill", "--status", info["backfill_id"], *url)
    assert again.code == 0 and info["backfill_id"] in again.out and "COMPLETED_SUCCESS" in again.out
    after = cli("status", video_id, "--json", *url).json()
    assert after["assets"]["yoko/render"]["state"] == "MATERIALIZED"
    assert after["latest_run"]["backfill_id"] == info["backfill_id"]
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))  # the instance's SQLite lives there
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        backfill_run = instance.get_run_by_id(after["latest_run"]["run_id"])
    assert backfill_run is not None and backfill_run.tags.get("autoedit/kind") == "render"  # counted by the limit
    assert after["outputs"]["yoko"]["video"].endswith(f"/renders/{video_id}/yoko/final.mp4")

    # catalog_sensor refreshed video_catalog after the runs finished (no waiting for the nightly schedule).
    catalog = deployment.storage / "catalog" / "video_catalog.parquet"
    deadline = time.monotonic() + float(WAIT)
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = pl.read_parquet(catalog).filter(pl.col("video_id") == video_id).to_dicts() if catalog.exists() else []
        if rows and sorted(rows[0]["profiles"]) == ["tate", "yoko"]:
            break
        time.sleep(1.0)
    assert rows and rows[0]["status"] == "rendered" and sorted(rows[0]["profiles"]) == ["tate", "yoko"], rows
    catalog_at = time.monotonic()
    print(
        f"\nsubmit {submitted_at - started:.1f} s, status+fetch {backfill_at - submitted_at:.1f} s, "
        f"backfill {backfilled_at - backfill_at:.1f} s (run queued after {run['created'] - info['created']:.1f} s, "
        f"ran {run['ended'] - run['created']:.1f} s, backfill marked done {info['ended'] - run['ended']:.1f} s later), "
        f"video_catalog current {catalog_at - backfilled_at:.1f} s after the backfill"
    )


def test_errors_are_one_line_with_exit_status(deployment: Deployment, cli, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOEDIT_STORAGE", str(deployment.storage))
    cases = [
        (["status", "nope-00000000", "--url", deployment.url], 2, "unknown video: nope-00000000"),
        (["fetch", "nope-00000000", "-o", str(tmp_path / "x.mp4"), "--url", deployment.url], 2, "unknown video"),
        (["backfill", "--status", "nosuchid", "--url", deployment.url], 2, "nosuchid"),
        (["status", "--url", f"http://127.0.0.1:{free_port()}"], 1, "cannot reach"),
        (["status", "--url", "127.0.0.1:3000"], 2, "bad server URL"),
        (["status", "--url", f"{deployment.url}/not-dagster"], 2, "is --url the Dagster webserver"),
    ]
    for argv, code, fragment in cases:
        result = cli(*argv)
        lines = result.err.strip().splitlines()
        assert (result.code, len(lines)) == (code, 1), (argv, result.err)
        assert lines[0].startswith("autoedit: error: ") and fragment in lines[0], (argv, lines)
        assert result.out == ""


def test_a_failed_submit_and_status_say_why(deployment: Deployment, cli, monkeypatch, tmp_path: Path) -> None:
    """A file that is no video fails its run: `submit --wait` and `status` give the reason, in the real schema."""
    monkeypatch.setenv("AUTOEDIT_STORAGE", str(deployment.storage))
    bad = tmp_path / "notes.mp4"
    bad.write_text("minutes of the meeting, not a video")
    result = cli("submit", str(bad), "--wait", "--timeout", WAIT, "--url", deployment.url)
    assert result.code == 1, result.err + deployment.tail()
    video_id = video_id_for_upload("uploads/notes.mp4")
    reason = result.out.splitlines()[-1]
    # the quarantine record's reason, or the failed step's error if the sensor has not written it yet
    assert reason.startswith("reason ") and "not a media file" in reason, result.out
    assert "did not succeed: " in result.err.splitlines()[-1]
    failure = cli("status", video_id, "--json", "--url", deployment.url).json()["failure"]
    assert failure["reason"].startswith("step source_video: ") and "not a media file" in failure["reason"], failure
