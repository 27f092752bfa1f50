"""Silence cutting by loudness: speech kept, long pauses removed, margins honoured, keep-all cases.

The talking clip is made once per module from espeak-ng phrases with known pauses (exact truth);
the exact frame arithmetic is checked on hand-built tables (which have no `speech_prob`, so they
are judged by loudness, as stored tables from before the voice detector are). The voice
detector has its own tests (test_voice.py).
"""

import itertools
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA, SILENT_DB, analyze
from autoedit_dagster.engine.config import SilenceSettings
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.speech import ranges_to_seconds, speech_segments
from autoedit_dagster.engine.timeline import FrameRange
from testsupport.media_factory import TalkClip, ffmpeg, shots_clip, talk_clip

FPS = Fraction(25)
PHRASES = [
    "Hello and welcome to the show.",
    "Today we talk about editing.",
    "It is simple.",
    "Silence is removed automatically, said the editor.",
    "Thanks.",
]
PAUSES = [1.2, 0.25, 1.5, 0.6]
LOUDNESS = SilenceSettings(detector="loudness")


def _covered(span: tuple[float, float], kept: list[tuple[float, float]]) -> float:
    """Seconds of `span` inside the kept ranges."""
    return sum(max(0.0, min(span[1], e) - max(span[0], s)) for s, e in kept)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def talk(media: Path) -> tuple[TalkClip, pl.DataFrame]:
    clip = talk_clip(media / "talk.mp4", PHRASES, PAUSES, size="160x90", lead=0.8)
    return clip, analyze(probe(clip.path))


def _kept(analysis: pl.DataFrame, settings: SilenceSettings = LOUDNESS) -> list[tuple[float, float]]:
    return ranges_to_seconds(speech_segments(analysis, FPS, settings), FPS)


def test_speech_is_kept_and_long_pauses_cut(talk: tuple[TalkClip, pl.DataFrame]) -> None:
    clip, analysis = talk
    kept = _kept(analysis)
    speech = sum(e - s for s, e in clip.speech)
    assert sum(_covered(s, kept) for s in clip.speech) / speech >= 0.98
    for (_, end), (start, _), pause in zip(clip.speech[:-1], clip.speech[1:], PAUSES, strict=True):
        removed = 1 - _covered((end, start), kept) / (start - end)
        if pause >= 1.0:
            # 0.2 s margins either side leave at most 0.4 s (+ a frame each side) of the pause.
            assert removed >= (pause - 0.4 - 2 / 25) / pause
        else:
            assert removed == 0  # short pauses stay: cutting them only makes the edit jumpy
    assert sum(e - s for s, e in kept) < clip.duration - 2.0


def test_margins_are_honoured(talk: tuple[TalkClip, pl.DataFrame]) -> None:
    clip, analysis = talk
    kept = _kept(analysis)
    # Phrases 0, 1 and 3 begin after a removed silence: each kept range starts 0.2 s before the
    # voice, give or take the frame the onset falls in; phrases 0, 2 and 4 end one.
    starts = [s for s, _ in kept]
    ends = [e for _, e in kept]
    for phrase in (0, 1, 3):
        onset = clip.speech[phrase][0]
        assert min(abs(s - (onset - 0.2)) for s in starts) <= 2 / 25
    for phrase in (0, 2, 4):
        offset = clip.speech[phrase][1]
        assert min(abs(e - (offset + 0.2)) for e in ends) <= 2 / 25


def test_settings_have_effect(talk: tuple[TalkClip, pl.DataFrame]) -> None:
    _, analysis = talk

    def total(settings: SilenceSettings) -> float:
        return sum(e - s for s, e in _kept(analysis, settings))

    def loudness(**changes: float) -> SilenceSettings:
        return LOUDNESS.model_copy(update=changes)

    default = total(LOUDNESS)
    assert total(loudness(margin_before_s=0, margin_after_s=0)) < default - 0.5
    assert total(loudness(margin_before_s=0.5, margin_after_s=0.5)) > default + 0.5
    # Long enough a minimum silence keeps every pause: one range over all the speech.
    assert len(_kept(analysis, loudness(min_silence_s=2.0))) == 1
    # Loud means 80 dB over the floor: nothing is, so everything is kept.
    assert speech_segments(analysis, FPS, loudness(threshold_db=80)) == [FrameRange(start=0, end=analysis.height)]


def test_no_audio_keeps_everything(media: Path) -> None:
    path = media / "mute.mp4"
    shots_clip(path, [20, 20], size="160x90", audio=False)
    analysis = analyze(probe(path))
    assert analysis["audio_db"].null_count() == analysis.height
    assert speech_segments(analysis, FPS) == [FrameRange(start=0, end=analysis.height)]


@pytest.mark.parametrize("audio", ["anullsrc=r=48000:cl=mono", "sine=frequency=440:r=48000"])
def test_nothing_loud_keeps_everything(media: Path, audio: str) -> None:
    """Digital silence, or a steady tone that is its own floor: nothing stands out, keep all."""
    path = media / f"{audio.split('=')[0]}.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=2", "-f", "lavfi", "-t", "2", "-i", audio,
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    analysis = analyze(probe(path))
    assert speech_segments(analysis, FPS) == [FrameRange(start=0, end=analysis.height)]


# --- hand-built tables ----------------------------------------------------------------------


def _table(levels: list[float] | np.ndarray) -> pl.DataFrame:
    """An analysis table with only the audio level set (dBFS per frame)."""
    n = len(levels)
    return pl.DataFrame(
        {"frame": np.arange(n), "time": np.arange(n) / 25, "audio_db": np.asarray(levels, dtype=float)},
        schema_overrides={k: ANALYSIS_SCHEMA[k] for k in ("frame", "time", "audio_db")},
    )


def _levels(n: int, loud: list[tuple[int, int]], quiet: float = -60.0) -> np.ndarray:
    levels = np.full(n, quiet)
    for start, end in loud:
        levels[start:end] = -20.0
    return levels


def test_exact_margins() -> None:
    # 0.2 s at 25 fps is 5 frames each side.
    assert speech_segments(_table(_levels(200, [(50, 60)])), FPS) == [FrameRange(start=45, end=65)]
    no_margin = SilenceSettings(margin_before_s=0, margin_after_s=0.4)
    assert speech_segments(_table(_levels(200, [(50, 60)])), FPS, no_margin) == [FrameRange(start=50, end=70)]


def test_short_blip_dropped_short_silence_kept() -> None:
    # A 2-frame click (0.08 s < min_clip 0.2 s) far from speech is dropped.
    levels = _levels(300, [(50, 80), (200, 202)])
    assert speech_segments(_table(levels), FPS) == [FrameRange(start=45, end=85)]
    # Two words 16 frames apart: after 5+5 frames of margins 6 frames (0.24 s) of silence are
    # left, under min_silence 0.3 s, so they stay one range; 20 frames apart they split.
    assert speech_segments(_table(_levels(300, [(50, 80), (96, 120)])), FPS) == [FrameRange(start=45, end=125)]
    assert speech_segments(_table(_levels(300, [(50, 80), (100, 120)])), FPS) == [
        FrameRange(start=45, end=85),
        FrameRange(start=95, end=125),
    ]
    # A short word next to a sentence is judged with it, not dropped as a blip.
    assert speech_segments(_table(_levels(300, [(50, 80), (88, 90)])), FPS) == [FrameRange(start=45, end=95)]


def test_short_silence_at_the_edges_stays() -> None:
    # 5 frames of silence before the first margin and after the last: under min_silence (8).
    levels = _levels(100, [(10, 40), (60, 90)])
    assert speech_segments(_table(levels), FPS) == [
        FrameRange(start=0, end=45),
        FrameRange(start=55, end=100),
    ]


def test_floor_ignores_digital_silence() -> None:
    """A third of the file digital zeros, the rest room noise at -48 dBFS: the noise is not speech.

    Taking the floor from all frames would put it at -100 dBFS, the threshold at -50 and all the
    noise would be kept as "loud".
    """
    levels = np.concatenate([np.full(100, SILENT_DB), -48.0 + np.random.default_rng(1).normal(0, 1.0, 200)])
    levels[240:260] = -20.0
    assert speech_segments(_table(levels), FPS) == [FrameRange(start=235, end=265)]


def test_threshold_never_below_the_absolute_minimum() -> None:
    # Floor at -90 dBFS: -70 is 20 dB above it but under min_threshold_dbfs (-50), so not loud.
    levels = np.full(200, -90.0)
    levels[50:60] = -70.0
    assert speech_segments(_table(levels), FPS) == [FrameRange(start=0, end=200)]
    louder = SilenceSettings(min_threshold_dbfs=-80.0)
    assert speech_segments(_table(levels), FPS, louder) == [FrameRange(start=45, end=65)]


def test_edge_cases() -> None:
    assert speech_segments(_table([]), FPS) == []
    assert speech_segments(_table([-20.0]), FPS) == [FrameRange(start=0, end=1)]
    assert speech_segments(_table([-90.0]), FPS) == [FrameRange(start=0, end=1)]
    all_null = pl.DataFrame({"audio_db": [None, None, None]}, schema={"audio_db": pl.Float32})
    assert speech_segments(all_null, FPS) == [FrameRange(start=0, end=3)]


def test_ranges_to_seconds() -> None:
    ntsc = Fraction(30000, 1001)
    assert ranges_to_seconds([FrameRange(start=0, end=30), FrameRange(start=60, end=90)], ntsc) == [
        (0.0, pytest.approx(1.001)),
        (pytest.approx(2.002), pytest.approx(3.003)),
    ]
    assert ranges_to_seconds([], ntsc) == []


def test_long_file_is_fast() -> None:
    """Two hours at 30 fps: vectorised run arithmetic, no per-frame Python loop."""
    rng = np.random.default_rng(0)
    n = 2 * 3600 * 30
    levels = np.where(rng.random(n // 30).repeat(30) < 0.6, -20.0, -60.0) + rng.normal(0, 2, n)
    began = time.perf_counter()
    ranges = speech_segments(_table(levels), Fraction(30))
    assert time.perf_counter() - began < 2.0
    assert all(a.end < b.start for a, b in itertools.pairwise(ranges))
