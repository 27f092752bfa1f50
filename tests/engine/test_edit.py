"""`edit`: planning in a child process (long sources), errors crossing back, and a small parent beside the render."""

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autoedit_dagster.engine.edit import PlanningFailed, edit
from autoedit_dagster.engine.errors import CorruptMedia, FFmpegFailed
from autoedit_dagster.engine.media_info import probe
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
