"""Shot boundaries: exact hard cuts, flashes that are not cuts, dissolves and fades as gradual.

Media is made once per module with ffmpeg lavfi (each file knows its truth) and analysed once;
the edge cases run on hand-built analysis tables.
"""

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA, analyze
from autoedit_dagster.engine.config import ShotSettings
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.shots import ShotBoundary, detect_shots, shot_ranges
from autoedit_dagster.engine.timeline import FrameRange
from testsupport.media_factory import ffmpeg, shots_clip

FPS = Fraction(25)
SHOT_FRAMES = [50, 40, 60, 45, 55, 50, 40]


def _encode(*args: str, out: Path) -> pl.DataFrame:
    ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", str(out))
    return analyze(probe(out))


def _xfade(out: Path, first: str, second: str, transition: str) -> pl.DataFrame:
    """Two 4 s lavfi sources joined by a 1 s `transition` starting at 2 s (frames 50-75)."""
    return _encode(
        "-f", "lavfi", "-t", "4", "-i", f"{first}=s=320x180:r=25",
        "-f", "lavfi", "-t", "4", "-i", f"{second}=s=320x180:r=25",
        "-filter_complex",
        f"[0:v]format=yuv420p,setsar=1[a];[1:v]format=yuv420p,setsar=1[b];"
        f"[a][b]xfade=transition={transition}:duration=1:offset=2[v]",
        "-map", "[v]", out=out,
    )  # fmt: skip


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def cuts_clip(media: Path) -> tuple[pl.DataFrame, list[int]]:
    path = media / "cuts.mp4"
    truth = shots_clip(path, SHOT_FRAMES, size="320x180", audio=False)
    return analyze(probe(path)), truth


@pytest.fixture(scope="module")
def flash_clip(media: Path) -> pl.DataFrame:
    """testsrc2 with a brightness flash on frames 40-42 and two full white frames at 70-71."""
    return _encode(
        "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=4",
        "-vf", "eq=brightness=0.6:enable='between(n,40,42)',"
               "drawbox=c=white:t=fill:enable='between(n,70,71)'",
        out=media / "flash.mp4",
    )  # fmt: skip


@pytest.fixture(scope="module")
def dissolve_clip(media: Path) -> pl.DataFrame:
    return _xfade(media / "dissolve.mp4", "testsrc2", "mandelbrot", "fade")


@pytest.fixture(scope="module")
def fade_black_clip(media: Path) -> pl.DataFrame:
    return _xfade(media / "fadeblack.mp4", "smptebars", "testsrc2", "fadeblack")


def test_hard_cuts_are_found_exactly(cuts_clip: tuple[pl.DataFrame, list[int]]) -> None:
    analysis, truth = cuts_clip
    found = detect_shots(analysis, FPS)
    assert [b.kind for b in found] == ["cut"] * len(truth)
    # The `life` source's first frame is a random fill unlike its second, so that one cut may
    # land one frame late; every other cut is exact.
    assert [b.frame for b in found[:-1]] == truth[:-1]
    assert abs(found[-1].frame - truth[-1]) <= 1
    assert all(b.length == 1 and b.start == b.frame for b in found)
    assert found[0].time == pytest.approx(truth[0] / 25)


def test_shot_ranges_tile_the_clip(cuts_clip: tuple[pl.DataFrame, list[int]]) -> None:
    analysis, _ = cuts_clip
    ranges = shot_ranges(detect_shots(analysis, FPS), analysis.height)
    assert len(ranges) == len(SHOT_FRAMES)
    assert ranges[0].start == 0 and ranges[-1].end == analysis.height
    assert all(a.end == b.start for a, b in itertools.pairwise(ranges))


def test_a_flash_is_not_a_cut(flash_clip: pl.DataFrame) -> None:
    scores = flash_clip["scene_score"].to_numpy()
    # The trap is real: a threshold detector alone would report four cuts here.
    assert (scores[[40, 43, 70, 72]] > ShotSettings().cut_threshold).all()
    assert detect_shots(flash_clip, FPS) == []


def test_without_the_flash_check_the_flash_becomes_cuts(flash_clip: pl.DataFrame) -> None:
    found = detect_shots(flash_clip, FPS, ShotSettings(flash_window_frames=0, min_shot_frames=1))
    assert {b.frame for b in found} >= {40, 43}


@pytest.fixture(scope="module")
def two_frame_shot_clip(media: Path) -> pl.DataFrame:
    """Purple (30 frames), testsrc2 for 2 frames, then green of the same brightness (40 frames)."""
    return _encode(
        "-f", "lavfi", "-i", "color=c=0x9060C0:s=320x180:r=25:d=1.2",
        "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=0.08",
        "-f", "lavfi", "-i", "color=c=0x40A060:s=320x180:r=25:d=1.6",
        "-filter_complex", "[0:v][1:v][2:v]concat=n=3[v]", "-map", "[v]",
        out=media / "two_frame_shot.mp4",
    )  # fmt: skip


def test_a_short_shot_between_two_colours_is_a_cut(two_frame_shot_clip: pl.DataFrame) -> None:
    """The pictures either side match in gray but not in colour: the old shot never comes back."""
    before, after = (np.frombuffer(two_frame_shot_clip["signature"][i], np.uint8) for i in (29, 32))
    assert np.abs(before.astype(int) - after).mean() < 5  # the trap: gray alone sees a flash
    (cut,) = detect_shots(two_frame_shot_clip, FPS)
    assert cut.kind == "cut"
    assert abs(cut.frame - 30) <= 2


def test_a_table_without_colour_thumbnails_still_works(two_frame_shot_clip: pl.DataFrame) -> None:
    """Analyses stored before `chroma` existed: the gray pattern alone decides, as it did then."""
    assert detect_shots(two_frame_shot_clip.drop("chroma"), FPS) == []


def test_a_dissolve_is_one_gradual_boundary(dissolve_clip: pl.DataFrame) -> None:
    found = detect_shots(dissolve_clip, FPS)
    assert len(found) == 1
    (dissolve,) = found
    assert dissolve.kind == "gradual"
    assert 58 <= dissolve.frame <= 68  # the middle of frames 50-75
    # The span is found from where the change stands out of the shots' own motion: its start is
    # sharp, its tail fades into the incoming shot's motion.
    assert abs(dissolve.start - 51) <= 2
    assert dissolve.length >= 15 and dissolve.start + dissolve.length <= 78


def test_a_fade_through_black_is_one_gradual_boundary(fade_black_clip: pl.DataFrame) -> None:
    scores = fade_black_clip["scene_score"].to_numpy()
    # Near black, hue is noise: the HSV score alone jumps over the cut threshold inside the fade.
    assert scores[50:76].max() > ShotSettings().cut_threshold
    found = detect_shots(fade_black_clip, FPS)
    assert [b.kind for b in found] == ["gradual"]
    assert 50 <= found[0].frame <= 75
    assert fade_black_clip["luma"][found[0].frame] < 10  # placed in the black


def test_gradual_settings_have_effect(dissolve_clip: pl.DataFrame) -> None:
    assert detect_shots(dissolve_clip, FPS, ShotSettings(gradual_threshold=200)) == []
    assert detect_shots(dissolve_clip, FPS, ShotSettings(gradual_min_frames=40)) == []


def test_cut_threshold_has_effect(cuts_clip: tuple[pl.DataFrame, list[int]]) -> None:
    analysis, _ = cuts_clip
    assert detect_shots(analysis, FPS, ShotSettings(cut_threshold=255, min_cut_score=255)) == []
    spaced = detect_shots(analysis, FPS, ShotSettings(min_shot_frames=52))
    assert spaced[0].frame >= 52 and all(b.frame - a.frame >= 52 for a, b in itertools.pairwise(spaced))


def test_real_footage_one_shot_has_no_boundary(bunny: Path) -> None:
    """Big Buck Bunny excerpt: one shot with camera motion and repeated frames (24 -> 25 fps)."""
    assert detect_shots(analyze(probe(bunny)), FPS) == []


def test_real_footage_cut_and_dissolve(bunny: Path, carphone: Path, media: Path) -> None:
    norm = "fps=25,scale=320:180,setsar=1,format=yuv420p"
    cut = _encode(
        "-i", str(bunny), "-i", str(carphone), "-filter_complex",
        f"[0:v]{norm},trim=end_frame=66,setpts=PTS-STARTPTS[a];[1:v]{norm}[b];[a][b]concat=n=2:v=1[v]",
        "-map", "[v]", out=media / "real_cut.mp4",
    )  # fmt: skip
    assert [(b.frame, b.kind) for b in detect_shots(cut, FPS)] == [(66, "cut")]
    dissolve = _encode(
        "-i", str(bunny), "-i", str(carphone), "-filter_complex",
        f"[0:v]{norm}[a];[1:v]{norm}[b];[a][b]xfade=transition=fade:duration=0.6:offset=3[v]",
        "-map", "[v]", out=media / "real_dissolve.mp4",
    )  # fmt: skip
    found = detect_shots(dissolve, FPS)
    assert [b.kind for b in found] == ["gradual"] and 75 <= found[0].frame <= 90


# --- hand-built analysis tables -----------------------------------------------------------


def _table(frames: np.ndarray) -> pl.DataFrame:
    """An analysis table for a stack of 16x16 gray frames (scores from gray changes only)."""
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    n = len(frames)
    flat = frames.reshape(n, 256).astype(np.float64)
    change = np.concatenate(([0.0], np.abs(np.diff(flat, axis=0)).mean(axis=1)))[:n]
    none = [None] * n
    return pl.DataFrame(
        {
            "frame": np.arange(n), "time": np.arange(n) / 25, "luma": flat.mean(axis=1),
            "scene_score": change, "motion": change, "signature": [f.tobytes() for f in frames], "chroma": none,
            "subject_cx": none, "subject_cy": none, "subject_w": none, "subject_h": none,
            "subject_kind": none, "audio_db": none, "speech_prob": none, "k_power": none, "true_peak": none,
        },
        schema=ANALYSIS_SCHEMA,
    )  # fmt: skip


def _shot(seed: int, n: int, jitter: float = 2.0) -> np.ndarray:
    """n frames of one random picture with a little noise each frame (motion, grain)."""
    rng = np.random.default_rng(seed)
    picture = rng.uniform(40, 220, (16, 16))
    return picture + rng.normal(0, jitter, (n, 16, 16))


def test_empty_and_single_frame_tables() -> None:
    assert detect_shots(_table(np.zeros((0, 16, 16))), FPS) == []
    assert detect_shots(_table(_shot(1, 1)), FPS) == []
    assert shot_ranges([], 0) == []
    assert shot_ranges([], 1) == [FrameRange(start=0, end=1)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_clips_shorter_than_a_cuts_neighbourhood(n: int) -> None:
    """A clip of 2-4 frames (fewer than the 2 x 2 + 1 frames a cut is compared with) is not an error
    (it was: numpy's "same" convolution answers with the kernel's length), and a cut in it is found."""
    assert detect_shots(_table(_shot(1, n)), FPS) == []
    cut = _table(np.concatenate([_shot(1, n // 2), _shot(2, n - n // 2)]))
    assert [b.frame for b in detect_shots(cut, FPS, ShotSettings(min_shot_frames=1))] == [n // 2]


def test_synthetic_cut_and_spacing() -> None:
    table = _table(np.concatenate([_shot(1, 3), _shot(2, 30), _shot(3, 4), _shot(4, 30)]))
    found = detect_shots(table, FPS)
    # The cut at frame 3 is too close to the start, and of the cuts at 33 and 37 (a 4-frame shot)
    # only the stronger stands.
    assert len(found) == 1 and found[0].frame in (33, 37) and found[0].kind == "cut"
    assert [b.frame for b in detect_shots(table, FPS, ShotSettings(min_shot_frames=1))] == [3, 33, 37]


def test_synthetic_dissolve_and_fade() -> None:
    a, b = _shot(1, 40), _shot(2, 40)
    alpha = np.linspace(0, 1, 20)[:, None, None]
    dissolve = _table(np.concatenate([a[:30], (1 - alpha) * a[30] + alpha * b[0], b]))
    (found,) = detect_shots(dissolve, FPS)
    assert found.kind == "gradual" and 36 <= found.frame <= 43
    black = np.zeros((5, 16, 16))
    fade = _table(np.concatenate([a[:30], (1 - alpha) * a[30], black, alpha * b[0], b]))
    (found,) = detect_shots(fade, FPS)
    assert found.kind == "gradual" and 50 <= found.frame <= 55


def test_brightness_drift_is_not_a_transition() -> None:
    """A camera's exposure sliding down over half a second is not a dissolve."""
    a = _shot(1, 80)
    a[30:50] -= np.linspace(0, 40, 20)[:, None, None]
    a[50:] -= 40
    assert detect_shots(_table(a), FPS) == []


def test_shot_ranges_ignore_out_of_range_boundaries() -> None:
    def at(frame: int) -> ShotBoundary:
        return ShotBoundary(frame=frame, time=frame / 25, kind="cut", score=50, length=1, start=frame)

    assert shot_ranges([at(0), at(5), at(5), at(12)], 10) == [
        FrameRange(start=0, end=5),
        FrameRange(start=5, end=10),
    ]
