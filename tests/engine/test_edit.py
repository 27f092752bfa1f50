"""`edit`: planning in a child process (long sources), errors crossing back, and a small parent beside the render."""

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autoedit_dagster.engine import verify
from autoedit_dagster.engine.config import get_profile
from autoedit_dagster.engine.edit import PlanningFailed, _loudness_warnings, edit, plan_edit
from autoedit_dagster.engine.errors import CorruptMedia, FFmpegFailed
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.render import RenderResult
from autoedit_dagster.engine.subjects import SubjectTracker
from autoedit_dagster.engine.timeline import LoudnessMeasurement
from testsupport.media_factory import talk_clip


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory):
    return talk_clip(tmp_path_factory.mktemp("talk") / "talk.mp4", ["one sentence", "and another"], [1.0])


def test_edit_plans_in_a_child_and_renders(talk, tmp_path: Path) -> None:
    stages: list[str] = []
    out, png = tmp_path / "out.mp4", tmp_path / "pictures" / "timeline.png"
    png.parent.mkdir()
    # Other tests in this process may keep children of their own (the gateway's GraphQL checkers).
    before = set(multiprocessing.active_children())
    result = edit(talk.path, out, "tate", exports=["edl"], timeline_png_path=png,
                  on_progress=lambda stage, _f: stages.append(stage), isolate=True)  # fmt: skip
    info = probe(out)
    assert (info.width, info.height) == (1080, 1920)
    assert info.duration == pytest.approx(result.output_duration, abs=0.1)
    assert result.timeline_png == str(png) and png.stat().st_size > 0
    assert Path(result.exports["edl"]).exists()
    # The analysis' progress came across from the planning process, then the render's.
    assert stages[0] == "analyse" and stages[-1] == "render" and "analyse" not in stages[stages.index("render") :]
    assert set(multiprocessing.active_children()) <= before  # the planner has exited


def test_bad_input_keeps_its_type_across_the_process_boundary(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n")
    out, png = tmp_path / "out.mp4", tmp_path / "timeline.png"
    with pytest.raises(CorruptMedia, match=r"notes\.mp4"):
        edit(fake, out, timeline_png_path=png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_a_planning_process_that_dies_is_an_internal_error(talk, tmp_path: Path) -> None:
    def kill_planner(stage: str, _fraction: float) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(PlanningFailed, match="exit code -9"):
        edit(talk.path, tmp_path / "out.mp4", on_progress=kill_planner, isolate=True)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(FFmpegFailed(["ffmpeg", "-i", "x"], 1, "first\nlast line")))
    assert (error.args_list, error.returncode) == (["ffmpeg", "-i", "x"], 1)
    assert str(error) == "ffmpeg exited 1: first | last line"


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        # What the parent imports stays resident for the whole render (bench/RESULTS.md, memory).
        ("autoedit_dagster.cli, autoedit_dagster.engine.edit", ("cv2", "polars", "opentimelineio", "dagster")),
        # Planning in this process (a short source) loads OpenTimelineIO only when an export is asked for.
        ("autoedit_dagster.engine.pipeline", ("opentimelineio", "dagster")),
        # `autoedit` starts its ffprobe having imported only the standard library (`ffmpeg_io.ProbeRun`).
        ("autoedit_dagster.cli", ("pydantic", "numpy", "polars", "cv2", "dagster")),
    ],
)
def test_the_command_loads_no_heavy_library_early(modules: str, absent: tuple[str, ...]) -> None:
    code = f"import sys, {modules}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_short_source_is_planned_in_this_process(talk, tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())
    result = edit(talk.path, tmp_path / "out.mp4", "yoko")
    assert result.output_duration > 0 and result.render.loudness is not None
    assert set(multiprocessing.active_children()) <= before


@pytest.mark.parametrize(("profile", "searches"), [("yoko", False), ("tate", True)])
def test_only_a_reframing_edit_searches_for_subjects(
    talk, profile: str, searches: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Yoko keeps the whole frame: the crop is the only reader of the subject columns."""
    located: list[int] = []
    real = SubjectTracker.locate

    def locate(self: SubjectTracker, *args: Any, **kwargs: Any) -> Any:
        located.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SubjectTracker, "locate", locate)
    plan = plan_edit(talk.path, get_profile(profile), info=probe(talk.path))
    assert bool(located) is searches
    assert plan.timeline.ranges and plan.shots >= 1  # shots are still found (the summary counts them)


@pytest.mark.parametrize(
    ("delivered", "measured_file", "warned"),
    [(-14.2, False, False), (-16.0, False, True), (None, True, True)],
)
def test_a_limited_edit_is_measured_again_only_when_its_make_up_did_not_measure_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivered: float | None, measured_file: bool, warned: bool
) -> None:
    files: list[Path] = []

    def integrated_loudness(path: Path) -> float:
        files.append(path)
        return -17.0

    monkeypatch.setattr(verify, "integrated_loudness", integrated_loudness)
    result = RenderResult(
        output=tmp_path / "out.mp4",
        command=[],
        output_duration=10.0,
        loudness=LoudnessMeasurement(input_i=-20, input_tp=-2, input_lra=3, input_thresh=-30, target_offset=6),
        limited=True,
        delivered_lufs=delivered,
        wall_seconds=1.0,
    )
    warnings: list[str] = []
    _loudness_warnings(result, result.output, get_profile("yoko"), warnings.append)
    assert bool(files) is measured_file
    assert bool(warnings) is warned
