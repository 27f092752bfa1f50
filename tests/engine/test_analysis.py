"""analyze(): one decode pass to a per-frame table."""

import subprocess
from pathlib import Path

import polars as pl
import pytest

from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA, analyze
from autoedit_dagster.engine.config import AnalysisSettings
from autoedit_dagster.engine.media_info import probe
from tests.media_factory import moving_subject_clip, shots_clip, talk_clip


def test_one_row_per_frame_with_schema(bunny: Path) -> None:
    table = analyze(probe(bunny))
    assert table.height == 132
    assert dict(table.schema) == ANALYSIS_SCHEMA
    assert table["frame"].to_list() == list(range(132))
    assert table["time"][25] == pytest.approx(1.0)
    assert table["audio_db"].null_count() == 0


def test_scene_score_peaks_exactly_at_cuts(tmp_path: Path) -> None:
    cuts = shots_clip(tmp_path / "shots.mp4", [30, 40, 25, 50])
    table = analyze(probe(tmp_path / "shots.mp4"))
    top = table.sort("scene_score", descending=True)["frame"][:3].sort().to_list()
    assert top == cuts


def test_audio_levels_follow_speech(tmp_path: Path) -> None:
    clip = talk_clip(tmp_path / "talk.mp4", ["one two three four", "five six seven"], [1.5])
    table = analyze(probe(clip.path))
    (s0, e0), (s1, _e1) = clip.speech
    speech = table.filter(pl.col("time").is_between(s0 + 0.1, e0 - 0.1))["audio_db"]
    pause = table.filter(pl.col("time").is_between(e0 + 0.2, s1 - 0.2))["audio_db"]
    assert speech.median() > pause.median() + 20


def test_subject_follows_moving_disc(tmp_path: Path) -> None:
    truth = moving_subject_clip(tmp_path / "move.mp4", seconds=3)
    table = analyze(probe(tmp_path / "move.mp4"), AnalysisSettings(subject_fps=5))
    sampled = table.filter(pl.col("subject_cx").is_not_null())
    assert sampled.height >= 14
    errors = [abs(row["subject_cx"] - truth[row["frame"]][0]) for row in sampled.iter_rows(named=True)]
    assert sorted(errors)[len(errors) // 2] < 15  # median error in pixels on a 640-wide frame


def test_face_found_in_real_clip(carphone: Path) -> None:
    table = analyze(probe(carphone))
    kinds = table["subject_kind"].drop_nulls().to_list()
    assert kinds.count("face") >= len(kinds) // 2
    faces = table.filter(pl.col("subject_kind") == "face")
    assert 40 < faces["subject_cx"].median() < 140  # the man sits in the middle of the 176-px frame
    assert table["audio_db"].null_count() == table.height  # no audio stream


def test_memory_does_not_hold_frames(tmp_path: Path) -> None:
    """Regression guard: the decode pass keeps one previous frame, not the video."""
    clip = tmp_path / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=20", "-c:v", "libx264",
         "-preset", "ultrafast", str(clip)], check=True,
    )  # fmt: skip
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = analyze(probe(clip))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert table.height == 500
    assert grown_mb < 150
