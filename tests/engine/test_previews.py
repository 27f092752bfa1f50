"""Preview pictures: the timeline PNG is measured pixel by pixel; thumbnails come from real video."""

from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from autoedit_dagster.engine import ffmpeg_io, previews, tempfiles
from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA
from autoedit_dagster.engine.errors import FFmpegFailed, UnsupportedMedia
from autoedit_dagster.engine.timeline import CropKey, FrameRange, Timeline
from testsupport.media_factory import ffmpeg, shots_clip

FRAMES = 1500  # 60 s at 25 fps


def make_analysis(frames: int = FRAMES, audio: bool = True) -> pl.DataFrame:
    """An analysis table with the real schema; loudness swings between -70 and -10 dBFS."""
    index = np.arange(frames)
    db = -40 + 30 * np.sin(index / 40.0) if audio else [None] * frames
    columns = {name: pl.Series(name, [None] * frames, dtype=dtype) for name, dtype in ANALYSIS_SCHEMA.items()}
    columns |= {
        "frame": pl.Series("frame", index, dtype=pl.UInt32),
        "time": pl.Series("time", index / 25.0, dtype=pl.Float64),
        "audio_db": pl.Series("audio_db", db, dtype=pl.Float32),
    }
    return pl.DataFrame(list(columns.values()))


def make_timeline(ranges: list[tuple[int, int]], crop: bool = True, has_audio: bool = True) -> Timeline:
    return Timeline(
        source="/in/interview take 2.mp4",
        profile="tate" if crop else "yoko",
        fps="25/1",
        frame_count=FRAMES,
        source_width=1920,
        source_height=1080,
        has_audio=has_audio,
        output_width=1080 if crop else 1920,
        output_height=1920 if crop else 1080,
        crop_width=608 if crop else None,
        crop_height=1080 if crop else None,
        ranges=[FrameRange(start=a, end=b) for a, b in ranges],
        # Left edge of the frame for the first half, right edge for the second.
        crop=[CropKey(frame=0, x=0, y=0), CropKey(frame=FRAMES // 2, x=1920 - 608, y=0)] if crop else [],
    )


RANGES = [(0, 200), (260, 700), (705, 900), (1100, 1430)]  # 1165 of 1500 frames kept


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def colour_mask(img: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.all(img == np.array(bgr, dtype=np.uint8), axis=2)


def band_share(img: np.ndarray) -> tuple[float, int]:
    """Kept share and length of the row with the most kept/removed band pixels."""
    kept = colour_mask(img, previews.KEPT_BGR).sum(axis=1)
    removed = colour_mask(img, previews.REMOVED_BGR).sum(axis=1)
    row = int(np.argmax(kept + removed))
    return kept[row] / (kept[row] + removed[row]), int(kept[row] + removed[row])


def below_header(img: np.ndarray) -> np.ndarray:
    return img[previews._HEADER :]


@pytest.mark.parametrize("width", [1600, 1000, 640])
def test_png_has_width_and_kept_share(tmp_path: Path, width: int) -> None:
    timeline = make_timeline(RANGES)
    path = previews.timeline_png(make_analysis(), timeline, [260, 705, 1100], tmp_path / "timeline.png", width)
    img = read_png(path)
    assert img.shape[1] == width

    share, length = band_share(img)
    assert length == width - previews._LEFT - previews._RIGHT  # the band spans the whole time axis
    assert share == pytest.approx(timeline.output_frames / FRAMES, abs=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline.png"]  # no temp file left


@pytest.mark.parametrize("ranges", [[(0, 150)], [(0, FRAMES)], [(i, i + 5) for i in range(0, FRAMES, 50)]])
def test_band_proportions_follow_many_shapes_of_edit(tmp_path: Path, ranges: list[tuple[int, int]]) -> None:
    timeline = make_timeline(ranges)
    img = read_png(previews.timeline_png(make_analysis(), timeline, [], tmp_path / "t.png"))
    share, _ = band_share(img)
    assert share == pytest.approx(timeline.output_frames / FRAMES, abs=0.01)


def test_loudness_envelope_only_with_audio(tmp_path: Path) -> None:
    with_audio = read_png(previews.timeline_png(make_analysis(), make_timeline(RANGES), [], tmp_path / "a.png"))
    silent = previews.timeline_png(
        make_analysis(audio=False), make_timeline(RANGES, has_audio=False), [], tmp_path / "b.png"
    )
    without = read_png(silent)
    assert colour_mask(below_header(with_audio), previews._WAVE_KEPT).sum() > 10_000
    assert colour_mask(below_header(without), previews._WAVE_KEPT).sum() == 0
    assert band_share(without)[0] == pytest.approx(band_share(with_audio)[0])


def test_crop_window_follows_the_path_and_yoko_has_none(tmp_path: Path) -> None:
    img = read_png(previews.timeline_png(make_analysis(), make_timeline([(0, FRAMES)]), [], tmp_path / "t.png"))
    top, bottom = previews._CROP
    middle = previews._LEFT + (1600 - previews._LEFT - previews._RIGHT) // 2
    lane = img[top + 1 : bottom - 1]  # inside the lane's outline
    window = ~colour_mask(lane, previews._FRAME_AREA)  # the window's fill and its centre line
    rows = np.arange(window.shape[0])[:, None]
    first, second = (
        window[:, previews._LEFT + 5 : middle - 5],
        window[:, middle + 5 : 1600 - previews._RIGHT - 5],
    )
    # x=0 is drawn at the top of the lane, the right edge of the source at the bottom.
    assert (rows * first).sum() / first.sum() < 0.25 * window.shape[0]
    assert (rows * second).sum() / second.sum() > 0.75 * window.shape[0]
    # The window covers crop_width / source_width of the lane's height.
    assert first.sum(axis=0).mean() == pytest.approx((bottom - top) * 608 / 1920, abs=2)
    assert colour_mask(lane, previews._CROP_FILL).any()

    yoko = read_png(previews.timeline_png(make_analysis(), make_timeline(RANGES, crop=False), [], tmp_path / "y.png"))
    assert colour_mask(below_header(yoko), previews._CROP_FILL).sum() == 0


def test_shot_boundaries_are_vertical_lines(tmp_path: Path) -> None:
    shots = [0, 100, 400, 400, 1200, FRAMES + 10]  # the source's first frame and beyond its end: no line
    img = read_png(previews.timeline_png(make_analysis(), make_timeline(RANGES), shots, tmp_path / "t.png"))
    lines = colour_mask(below_header(img), previews._SHOT)
    columns = np.flatnonzero(lines.sum(axis=0) >= (previews._AUDIO[1] - previews._AUDIO[0]))
    assert len(columns) == 3


def test_real_analysis_of_bunny(tmp_path: Path, bunny: Path) -> None:
    from autoedit_dagster.engine.analysis import analyze
    from autoedit_dagster.engine.media_info import probe

    info = probe(bunny)
    analysis = analyze(info)
    timeline = Timeline(
        source=str(bunny), profile="square", fps=info.fps_fraction, frame_count=info.frame_count,
        source_width=info.width, source_height=info.height, has_audio=info.has_audio,
        output_width=1080, output_height=1080, crop_width=720, crop_height=720,
        ranges=[FrameRange(start=10, end=60), FrameRange(start=80, end=info.frame_count)],
        crop=[CropKey(frame=0, x=100, y=0), CropKey(frame=70, x=500, y=0)],
    )  # fmt: skip
    img = read_png(previews.timeline_png(analysis, timeline, [60], tmp_path / "bunny timeline.png"))
    assert img.shape[1] == 1600
    assert band_share(img)[0] == pytest.approx(timeline.output_frames / info.frame_count, abs=0.01)
    assert colour_mask(below_header(img), previews._WAVE_KEPT).sum() > 0


def test_too_narrow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 640"):
        previews.timeline_png(make_analysis(), make_timeline(RANGES), [], tmp_path / "t.png", width=300)


def test_png_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "timeline.png"
    path.write_bytes(b"previous")

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(tempfiles.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        previews.timeline_png(make_analysis(), make_timeline(RANGES), [], path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]


def read_jpeg(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"  # JPEG start and end markers
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_thumbnail_of_bunny(tmp_path: Path, bunny: Path) -> None:
    poster = read_jpeg(previews.thumbnail(bunny, tmp_path / "thumb.jpg"))
    assert poster.shape == (720, 1280, 3)
    assert poster.std() > 20  # a picture, not a black or flat frame
    late = read_jpeg(previews.thumbnail(bunny, tmp_path / "late.jpg", at=99.0))  # clamped to the last frame
    assert late.shape == (720, 1280, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.jpg", "thumb.jpg"]


def test_thumbnail_without_audio_and_odd_size(tmp_path: Path) -> None:
    video = tmp_path / "silent clip é.mp4"
    shots_clip(video, [20, 20], size="426x240", audio=False)
    poster = read_jpeg(previews.thumbnail(video, tmp_path / "out" / "poster.jpg", at=0.9))
    assert poster.shape == (240, 426, 3)


def test_thumbnail_of_audio_only_is_refused(tmp_path: Path) -> None:
    audio = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac", str(audio))
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        previews.thumbnail(audio, tmp_path / "thumb.jpg")
    assert not (tmp_path / "thumb.jpg").exists()


def test_thumbnail_failure_keeps_the_old_file(tmp_path: Path, bunny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "thumb.jpg"
    path.write_bytes(b"previous")
    real_run = ffmpeg_io.run

    def run_then_fail(args: list[str], **kwargs: object) -> str:
        out = real_run(args, **kwargs)  # type: ignore[arg-type]
        if args[0] == ffmpeg_io.FFMPEG:  # the temp JPEG is written; the worker "dies" now
            raise FFmpegFailed(args, 1, "killed")
        return out  # ffprobe

    monkeypatch.setattr(ffmpeg_io, "run", run_then_fail)
    with pytest.raises(FFmpegFailed):
        previews.thumbnail(bunny, path, at=1.0)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]


def test_speech_probability_is_drawn_over_the_loudness(tmp_path: Path) -> None:
    """Speech in the first half (probability 1: the lane's top), none after (0: its bottom)."""
    speech = np.where(np.arange(FRAMES) < FRAMES // 2, 1.0, 0.0)
    analysis = make_analysis().with_columns(pl.Series("speech_prob", speech, dtype=pl.Float32))
    img = read_png(previews.timeline_png(analysis, make_timeline(RANGES), [], tmp_path / "s.png"))
    top, bottom = previews._AUDIO
    mid = previews._LEFT + (1600 - previews._LEFT - previews._RIGHT) // 2
    line = colour_mask(img[top:bottom], previews.SPEECH_BGR)
    rows_left = np.flatnonzero(line[:, previews._LEFT + 10 : mid - 10].any(axis=1))
    rows_right = np.flatnonzero(line[:, mid + 10 : 1600 - previews._RIGHT - 10].any(axis=1))
    assert rows_left.max() < 6 and rows_right.min() > bottom - top - 6
    # No probability (no sound, or a table from before the voice detector): no line.
    for table in (make_analysis(), make_analysis().drop("speech_prob")):
        plain = read_png(previews.timeline_png(table, make_timeline(RANGES), [], tmp_path / "p.png"))
        assert not colour_mask(plain[top:bottom], previews.SPEECH_BGR).any()
