"""The per-video job end to end on a real instance and a real local store (no mocked Dagster)."""

import json
import re
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from autoedit_dagster.assets import links
from autoedit_dagster.checks.render_checks import check_render_file, check_result
from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.engine import pipeline
from autoedit_dagster.engine.config import get_profile
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.speech import NO_SPEECH_PROB
from autoedit_dagster.engine.timeline import Timeline
from autoedit_dagster.engine.verify import RenderQuality, evaluate_render
from autoedit_dagster.models import RenderOutput
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore
from testsupport.media_factory import ffmpeg, replace_render, talk_clip


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalMediaStore(root=str(root))
        self.defs = build_definitions(self.store)
        self.instance = dg.DagsterInstance.ephemeral()

    def upload(self, source: Path, name: str) -> str:
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, self.root / "uploads" / name)
        video_id = video_id_for_upload(f"uploads/{name}")
        self.instance.add_dynamic_partitions("videos", [video_id])
        return video_id

    def run(self, job: str, video_id: str, **kwargs) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=video_id, instance=self.instance, raise_on_error=False, **kwargs
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory):
    return talk_clip(
        tmp_path_factory.mktemp("talk") / "talk.mp4",
        ["welcome to the pipeline test", "this part comes after a long pause"], [2.5], size="640x360",
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished(setup: Setup, talk) -> tuple[str, dg.ExecuteInProcessResult]:
    video_id = setup.upload(talk.path, "Talk Clip.mp4")
    return video_id, setup.run("video_job", video_id)


def test_video_job_materializes_every_stage(setup: Setup, finished) -> None:
    video_id, result = finished
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {
        "source_video", "media_analysis", "speech_segments", "shots", "tate/crop_path", "tate/edit_timeline",
        "tate/render", "tate/previews", "tate/timeline_exports", "tate/edit_report",
    }  # fmt: skip
    renders = setup.root / "renders" / video_id / "tate"
    assert sorted(p.name for p in renders.iterdir()) == [
        "edit.edl", "edit.fcp7.xml", "edit.fcpxml", "edit.otio.json", "final.mp4", "report.json", "thumb.jpg",
        "timeline.png",
    ]  # fmt: skip
    info = probe(renders / "final.mp4")
    assert (info.width, info.height) == (1080, 1920)
    work = setup.root / "work" / video_id
    assert (
        pl.read_parquet(work / "media_analysis.parquet").height
        == probe(setup.root / "uploads/Talk Clip.mp4").frame_count
    )
    report = json.loads((renders / "report.json").read_text())
    assert report["seconds_removed"] > 1.5 and report["video_id"] == video_id
    # The report says what decided the cut and how much speech it found (two phrases, ~3.5 s).
    assert report["detector"] == "voice" and report["speech_found_s"] > 2.5 and report["speech_notes"] == []
    assert not [p for p in setup.root.rglob("*") if p.name.startswith(".")]  # no temp files left behind


def _speech_only(setup: Setup, video_id: str, **config: str) -> dg.ExecuteInProcessResult:
    """Materialize `speech_segments` alone with run config, as the launchpad would."""
    job = setup.defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        partition_key=video_id, instance=setup.instance, asset_selection=[dg.AssetKey("speech_segments")],
        run_config={"ops": {"speech_segments": {"config": config}}},
    )  # fmt: skip


def test_the_detector_is_run_config(setup: Setup, finished) -> None:
    video_id, _ = finished
    stored = setup.root / "work" / video_id / "speech_segments.parquet"
    try:
        result = _speech_only(setup, video_id, detector="loudness")
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["detector"].value == "loudness"
        assert set(pl.read_parquet(stored)["detector"]) == {"loudness"}
    finally:
        assert _speech_only(setup, video_id).success  # back to the default for the tests that follow
    assert set(pl.read_parquet(stored)["detector"]) == {"voice"}


def test_an_analysis_stored_before_speech_prob_falls_back_to_loudness(setup: Setup, finished) -> None:
    """Tables written before the voice detector have no `speech_prob`: they still load, and say so."""
    video_id, _ = finished
    analysis = setup.root / "work" / video_id / "media_analysis.parquet"
    current = pl.read_parquet(analysis)
    try:
        current.drop("speech_prob").write_parquet(analysis)
        result = _speech_only(setup, video_id)
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["detector"].value == "loudness"
        assert NO_SPEECH_PROB in metadata["notes"].value
    finally:
        current.write_parquet(analysis)
        assert _speech_only(setup, video_id).success


def test_render_checks_pass_on_a_good_render(finished) -> None:
    _, result = finished
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {
        "size_matches_profile": True, "duration_matches_timeline": True, "audio_video_in_sync": True,
        "loudness_on_target": True, "first_frame_not_black": True,
    }  # fmt: skip


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return event.materialization.metadata


def test_render_metadata_is_for_people(finished) -> None:
    """Rounded numbers with units, pictures and links a browser opens (the gateway's media route,
    relative without AUTOEDIT_PUBLIC_URL), the ffmpeg command folded away."""
    video_id, result = finished
    render = _metadata(result, "tate/render")
    media = f"/review/media/{video_id}/tate/"
    assert re.fullmatch(
        r"\d+\.\d s kept of \d+\.\d s \(\d+%\), 1080x1920 at [\d.]+ fps, rendered in \d+\.\d s"
        r"; audio measured -?\d+\.\d LUFS before normalising",
        render["summary"].value,
    ), render["summary"].value
    assert render["thumbnail"].value == f"![thumbnail of {video_id}]({media}thumb.jpg?width=270)"
    assert render["timeline"].value == f"![timeline of {video_id}]({media}timeline.png?width=800)"
    assert render["open"].value == f"{media}final.mp4"
    assert render["output_s"].value == round(render["output_s"].value, 2)
    assert render["render_s"].value == round(render["render_s"].value, 1)
    # Kept whole, one option a line, and long enough that the UI folds it ("[Show Markdown]").
    command = render["ffmpeg_command"].value
    assert command.startswith("```sh\nffmpeg \\\n  -hide_banner \\\n") and len(command) > 1000
    assert render["video"].value.endswith(f"renders/{video_id}/tate/final.mp4")  # `status` and `fetch` read it
    previews = _metadata(result, "tate/previews")
    assert previews["thumbnail_image"].value == f"![thumbnail]({media}thumb.jpg?width=270)"
    exports = _metadata(result, "tate/timeline_exports")
    assert exports["open_fcpxml"].value == f"{media}edit.fcpxml"
    # What the UI turns into links and pictures opens in a browser; the path entries (store URIs,
    # shown as text to copy) are what `status` and `fetch` read.
    for key in ("tate/render", "tate/previews", "tate/timeline_exports"):
        opened = (dg.UrlMetadataValue, dg.MarkdownMetadataValue)
        shown = {
            k: v.value for k, v in _metadata(result, key).items() if isinstance(v, opened) and k != "ffmpeg_command"
        }
        assert shown and all(value.count(media) == 1 and len(value) < 1000 for value in shown.values()), shown
        assert not any("file:" in value or "data:" in value for value in shown.values())


def test_media_links_use_the_public_url(monkeypatch) -> None:
    monkeypatch.setenv(links.PUBLIC_URL_ENV, "https://autoedit.example.com/")
    assert (
        links.media_url("a-0123", "tate", "thumb.jpg")
        == "https://autoedit.example.com/review/media/a-0123/tate/thumb.jpg"
    )
    for bad in ("ftp://x", "https://user:pw@host", "https://host/?q=1", "host:8080"):
        monkeypatch.setenv(links.PUBLIC_URL_ENV, bad)
        with pytest.raises(ValueError, match="AUTOEDIT_PUBLIC_URL"):
            build_definitions()


def test_a_failed_loudness_check_names_its_video(setup: Setup, finished) -> None:
    """The checks' history mixes every video's executions: a failure says whose, and what was measured."""
    video_id, _ = finished
    timeline = Timeline.model_validate_json(
        (setup.root / "work" / video_id / "tate" / "edit_timeline.json").read_text()
    )
    quiet = RenderQuality(
        width=timeline.output_width, height=timeline.output_height, video_codec="h264", pix_fmt="yuv420p",
        video_duration=timeline.output_duration, audio_duration=timeline.output_duration,
        integrated_lufs=-23.456, first_frame_luma=80.0,
    )  # fmt: skip
    (loudness,) = [o for o in evaluate_render(quiet, timeline, get_profile("tate")) if o.name == "loudness_on_target"]
    result = check_result(dg.AssetKey(["tate", "render"]), video_id, loudness)
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert result.description == f"{video_id}: -23.5 LUFS, target -14.0 ± 1 LU"
    assert result.metadata["video_id"].value == video_id
    assert result.metadata["integrated_lufs"].value == -23.46


def test_source_video_is_versioned_by_content(setup: Setup, finished) -> None:
    video_id, _ = finished
    source = json.loads((setup.root / "work" / video_id / "source_video.json").read_text())
    record = setup.instance.get_latest_materialization_event(dg.AssetKey("source_video"))
    assert record is not None
    assert record.asset_materialization.tags["dagster/data_version"] == source["sha256"]


def test_second_profile_does_not_rerun_analysis(setup: Setup, finished) -> None:
    video_id, _ = finished
    result = setup.run("yoko_job", video_id)
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "media_analysis" not in keys and "source_video" not in keys
    assert "yoko/render" in keys
    info = probe(setup.root / "renders" / video_id / "yoko" / "final.mp4")
    assert (info.width, info.height) == (640, 360)


def test_output_and_encoding_are_run_config(setup: Setup, finished) -> None:
    """`edit_timeline` takes the output's size and rate, `render` the encoder's settings (issue 15)."""
    video_id, _ = finished
    config = {
        "square__edit_timeline": {"config": {"height": 360, "fps": 10}},
        "square__render": {"config": {"crf": 35, "preset": "ultrafast"}},
    }
    result = setup.run("square_job", video_id, run_config={"ops": config})
    assert result.success
    final = setup.root / "renders" / video_id / "square" / "final.mp4"
    info = probe(final)
    assert (info.width, info.height, info.fps) == (360, 360, 10)
    assert b"crf=35.0" in final.read_bytes() and b"subme=0" in final.read_bytes()  # x264's own record
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_checks_fail_on_a_wrong_render(setup: Setup, finished, tmp_path: Path) -> None:
    """A render replaced by a wrong file (landscape, silent, black start) fails the blocking checks."""
    video_id, _ = finished
    final = setup.root / "renders" / video_id / "tate" / "final.mp4"
    wrong = tmp_path / "wrong.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=640x360:r=25:d=3", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(wrong))  # fmt: skip
    good = final.read_bytes()
    work = setup.root / "work" / video_id / "tate"
    render = RenderOutput.model_validate_json((work / "render.json").read_text())
    timeline = Timeline.model_validate_json((work / "edit_timeline.json").read_text())
    try:
        shutil.copy(wrong, final)
        # The same verdicts the job's checks give, on the stored values.
        results = check_render_file(setup.store, render.key, timeline, get_profile("tate"))
    finally:
        final.write_bytes(good)
    evaluations = {r.name: r.passed for r in results}
    assert evaluations["size_matches_profile"] is False
    assert evaluations["duration_matches_timeline"] is False
    assert evaluations["audio_video_in_sync"] is False  # the timeline has sound, the file has none
    assert evaluations["first_frame_not_black"] is False


def test_a_second_video_runs_and_is_checked_on_its_own(setup: Setup, finished, tmp_path: Path) -> None:
    """Each run checks its own video's render and timeline, so a second video passes too. The check
    specs carry no partitions (the asset graph's cost, render_checks.py), yet every evaluation names
    its video and targets that video's render of this run."""
    clip = tmp_path / "second.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=2", "-f", "lavfi", "-i", "sine=d=2", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", str(clip))  # fmt: skip
    video_id = setup.upload(clip, "second.mp4")
    result = setup.run("video_job", video_id)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 5 and all(e.passed for e in evaluations)
    render = setup.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["tate", "render"]), asset_partitions=[video_id]), limit=1
    ).records[0]
    for evaluation in evaluations:
        assert evaluation.partition is None
        assert evaluation.metadata["video_id"].value == video_id
        assert evaluation.target_materialization_data.storage_id == render.storage_id
        assert evaluation.target_materialization_data.run_id == result.run_id
    graph = setup.defs.resolve_asset_graph()
    assert all(graph.get(key).partitions_def is None for key in graph.asset_check_keys)
    assert (setup.root / "renders" / video_id / "tate" / "final.mp4").exists()


def test_bad_upload_fails_with_a_readable_reason(setup: Setup, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 20)
    video_id = setup.upload(bad, "notes.mp4")
    result = setup.run("video_job", video_id)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "not a media file" in failure.event_specific_data.error.message
    assert (setup.root / "uploads" / "notes.mp4").read_text() == "not a video\n" * 20
    assert not (setup.root / "renders" / video_id).exists()


def test_catalog_lists_rendered_and_pending(setup: Setup, finished) -> None:
    video_id, _ = finished
    result = dg.materialize(
        [a for a in setup.defs.assets if getattr(a, "key", None) == dg.AssetKey("video_catalog")],  # type: ignore[union-attr]
        instance=setup.instance, resources=setup.defs.resources,
    )  # fmt: skip
    assert result.success
    table = pl.read_parquet(setup.root / "catalog" / "video_catalog.parquet")
    row = table.filter(pl.col("video_id") == video_id).row(0, named=True)
    assert row["status"] == "rendered" and "tate" in row["profiles"]
    assert row["seconds_removed"] > 1.5


# ------------------------------------------------------------------ publishing: verify, then promote

TATE_ASSETS = [dg.AssetKey(["tate", name]) for name in ("crop_path", "edit_timeline", "render", "previews",
                                                         "timeline_exports", "edit_report")]  # fmt: skip


def published(setup: Setup, video_id: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((setup.root / "renders" / video_id / "tate").iterdir())}


def rerender(setup: Setup, video_id: str) -> dg.ExecuteInProcessResult:
    """The tate chain again (the analysis is loaded), as a re-render from the UI would run it."""
    return setup.run("video_job", video_id, asset_selection=TATE_ASSETS)


@pytest.fixture
def old_set(setup: Setup, finished) -> tuple[str, dict[str, bytes]]:
    """The video and its published tate set before the test re-renders it."""
    video_id, _ = finished
    return video_id, published(setup, video_id)


def test_a_rerender_failing_its_blocking_checks_publishes_nothing(
    setup: Setup, old_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """final.mp4 is published only after its blocking checks pass: a bad re-render leaves the good one."""
    video_id, before = old_set
    replace_render(monkeypatch, tmp_path, wrong=True)
    result = rerender(setup, video_id)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["size_matches_profile"] is False and checks["duration_matches_timeline"] is False
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "tate/edit_report" not in done and "tate/previews" not in done
    assert published(setup, video_id) == before  # the old set, byte for byte
    # What the run did make waits under its own staging folder, for the failure sensor or a sweep.
    leftovers = [p.relative_to(setup.root).as_posix() for p in (setup.root / "staging").rglob("*") if p.is_file()]
    assert leftovers and all(key.startswith(f"staging/{result.run_id}/{video_id}/tate/") for key in leftovers)


def test_a_crash_before_the_companions_are_written_leaves_the_old_set_whole(
    setup: Setup, old_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dying after the render and before the previews publishes nothing: never a mix of two runs."""
    video_id, before = old_set
    replace_render(monkeypatch, tmp_path)

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed while drawing the timeline")

    monkeypatch.setattr(pipeline, "timeline_png", crash)
    result = rerender(setup, video_id)
    assert not result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())  # the new render itself was fine
    assert published(setup, video_id) == before


def test_a_good_rerender_replaces_the_whole_set(
    setup: Setup, old_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id, before = old_set
    replace_render(monkeypatch, tmp_path)
    result = rerender(setup, video_id)
    assert result.success
    after = published(setup, video_id)
    assert sorted(after) == sorted(before)
    assert b"re-render" in after["final.mp4"] and after["final.mp4"] != before["final.mp4"]
    report = json.loads(after["report.json"])
    assert report["finished_at"] >= json.loads(before["report.json"])["finished_at"]
    assert not (setup.root / "staging" / result.run_id).exists()  # promoted, nothing left to sweep
    assert not [p for p in setup.root.rglob("*") if p.name.startswith(".")]


def test_a_render_materialized_alone_is_published_once_verified(
    setup: Setup, old_set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without edit_report (the render alone, from the UI) still publishes its verified video."""
    video_id, before = old_set
    replace_render(monkeypatch, tmp_path, comment="alone")
    result = setup.run("video_job", video_id, asset_selection=[dg.AssetKey(["tate", "render"])])
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    after = published(setup, video_id)
    assert b"re-render alone" in after["final.mp4"]
    assert {k: v for k, v in after.items() if k != "final.mp4"} == {k: v for k, v in before.items() if k != "final.mp4"}
    assert not (setup.root / "staging" / result.run_id).exists()


def test_a_backfill_run_checks_its_one_video(setup: Setup, old_set, tmp_path: Path, monkeypatch) -> None:
    """A backfill's run names its video by a one-key range, not a partition tag: the (unpartitioned)
    checks read that video's render all the same, and the verified render is published."""
    video_id, _ = old_set
    replace_render(monkeypatch, tmp_path, comment="backfill")
    tags = {"dagster/asset_partition_range_start": video_id, "dagster/asset_partition_range_end": video_id}
    result = setup.defs.resolve_job_def("video_job").execute_in_process(
        instance=setup.instance, raise_on_error=False, asset_selection=[dg.AssetKey(["tate", "render"])], tags=tags
    )
    evaluations = result.get_asset_check_evaluations()
    assert result.success and len(evaluations) == 5 and all(e.passed for e in evaluations)
    assert {e.metadata["video_id"].value for e in evaluations} == {video_id}
    assert b"re-render backfill" in published(setup, video_id)["final.mp4"]
