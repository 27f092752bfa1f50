"""Pictures of an edit for people: a timeline overview PNG and a JPEG poster frame.

`timeline_png` draws, over the source's time, the loudness envelope with the voice model's speech
probability over it (orange line, 0 at the lane's bottom, 1 at its top), the kept (green) and removed
(red) ranges, shot boundaries and the crop window's horizontal path, so an operator sees at a
glance what was cut and where the vertical frame looks. It is drawn with numpy and OpenCV only.
`thumbnail` asks ffmpeg for one representative frame. Both write atomically.
"""

import math
import uuid
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from . import ffmpeg_io
from .errors import CorruptMedia, UnsupportedMedia
from .media_info import probe
from .tempfiles import write_atomic
from .timeline import Timeline

# Colours are BGR (OpenCV's order). The band colours are exact, so tests and people can find them.
KEPT_BGR = (80, 175, 76)  # green
REMOVED_BGR = (53, 57, 229)  # red
_KEPT_TINT = (228, 245, 229)
_REMOVED_TINT = (230, 232, 252)
_WAVE_KEPT = (150, 105, 45)  # steel blue: the sound that stays
_WAVE_REMOVED = (165, 165, 170)  # grey: the sound that goes
_SHOT = (170, 40, 150)  # purple
SPEECH_BGR = (0, 140, 255)  # orange: the speech probability line
_CROP_FILL = (235, 190, 120)  # light blue: the crop window
_CROP_FILL_REMOVED = (245, 225, 200)  # paler where the frames are cut anyway
_CROP_LINE = (160, 90, 20)
_FRAME_AREA = (238, 238, 238)
_INK = (40, 40, 40)
_MUTED = (120, 120, 120)
_GRID = (205, 205, 205)
_WHITE = (255, 255, 255)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_DB_FLOOR = -60.0  # the envelope's bottom: quieter than this reads as silence
_LEFT, _RIGHT = 104, 18  # margins: lane names and scales on the left
# Rows of the picture, top to bottom (pixels): header (title + legend), loudness lane,
# kept/removed band, crop lane, time axis.
_HEADER = 58
_AUDIO = (_HEADER, _HEADER + 130)
_BAND = (_AUDIO[1] + 8, _AUDIO[1] + 30)
_CROP = (_BAND[1] + 8, _BAND[1] + 98)
_HEIGHT = _CROP[1] + 40

_THUMB_WINDOW_S = 3.0  # seconds the `thumbnail` filter compares when choosing a poster frame
_THUMB_MAX_FRAMES = 120


Colour = tuple[int, int, int]


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float = 0.45,
    color: Colour = _INK,
    bold: bool = False,
) -> None:
    # Hershey fonts are ASCII only; anything else would come out as '?'.
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cv2.putText(img, ascii_text, org, _FONT, scale, color, 2 if bold else 1, cv2.LINE_AA)


def _text_width(text: str, scale: float = 0.45, bold: bool = False) -> int:
    return cv2.getTextSize(text, _FONT, scale, 2 if bold else 1)[0][0]


def _right_text(img: np.ndarray, text: str, right: int, y: int, scale: float = 0.38) -> None:
    _text(img, text, (right - _text_width(text, scale), y), scale, _MUTED)


def _centred_text(img: np.ndarray, text: str, left: int, right: int, y: int, scale: float = 0.5) -> None:
    _text(img, text, ((left + right) // 2 - _text_width(text, scale) // 2, y), scale, _MUTED)


def _clock(seconds: float, tenths: bool = False, clock: bool | None = None) -> str:
    """`4.5` -> `4.5s`; `75` -> `1:15`; `3725.2` -> `1:02:05.2` (with `tenths`).

    `clock` forces or forbids the m:ss form, so all labels of one axis look alike.
    """
    total = round(seconds, 1) if tenths else round(seconds)  # before splitting: no `0:60`
    if not (clock if clock is not None else total >= 60):
        return f"{total:.1f}s" if tenths else f"{total:.0f}s"
    minutes, rest = divmod(total, 60)
    hours, minutes = divmod(int(minutes), 60)
    rest_text = f"{rest:04.1f}" if tenths else f"{int(rest):02d}"
    return f"{hours}:{minutes:02d}:{rest_text}" if hours else f"{minutes}:{rest_text}"


def _tick_step(duration: float, plot_width: int) -> float:
    """The smallest round step that keeps tick labels at least ~90 px apart."""
    most = max(1, plot_width // 90)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if duration / step <= most:
            return step
    return 3600 * math.ceil(duration / 3600 / most)


def _column_frames(frames: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel column: the first source frame it covers, and the frame at its centre."""
    starts = np.minimum((np.arange(columns) * frames) // columns, frames - 1)
    centres = np.minimum(((2 * np.arange(columns) + 1) * frames) // (2 * columns), frames - 1)
    return starts.astype(np.int64), centres.astype(np.int64)


def _loudness(analysis: pl.DataFrame, frames: int, starts: np.ndarray) -> np.ndarray | None:
    """Loudest dBFS per column (NaN where unknown), or None when there is no sound at all."""
    if "audio_db" not in analysis.columns or analysis["audio_db"].null_count() == analysis.height:
        return None
    per_frame = np.full(frames, np.nan)
    table = analysis.select("frame", "audio_db").drop_nulls()
    index = table["frame"].to_numpy().astype(np.int64)
    inside = index < frames
    per_frame[index[inside]] = table["audio_db"].to_numpy()[inside]
    # A column holds many frames on long videos: its loudest one keeps short words visible.
    return np.fmax.reduceat(per_frame, starts)


def _speech_columns(analysis: pl.DataFrame, frames: int, starts: np.ndarray) -> np.ndarray | None:
    """Highest speech probability per column, or None without one (no sound, or an older table)."""
    if "speech_prob" not in analysis.columns or analysis["speech_prob"].null_count() == analysis.height:
        return None
    per_frame = np.zeros(frames)
    table = analysis.select("frame", "speech_prob").drop_nulls()
    index = table["frame"].to_numpy().astype(np.int64)
    inside = index < frames
    per_frame[index[inside]] = table["speech_prob"].to_numpy()[inside]
    return np.maximum.reduceat(per_frame, starts)


def _crop_columns(timeline: Timeline, centres: np.ndarray) -> np.ndarray | None:
    """The crop window's left edge (source pixels) at each column, as `Timeline.crop_at` gives it."""
    if timeline.crop_width is None or not timeline.crop:
        return None
    keys = np.array([key.frame for key in timeline.crop])
    xs = np.array([key.x for key in timeline.crop])
    # Same rule as crop_at, vectorised: the last key at or before the frame, else the first key.
    which = np.clip(np.searchsorted(keys, centres, side="right") - 1, 0, len(keys) - 1)
    return xs[which].astype(np.float64)


def _legend(img: np.ndarray, x: int, y: int) -> None:
    for label, colour, kind in (
        ("kept", KEPT_BGR, "box"),
        ("removed", REMOVED_BGR, "box"),
        ("loudness", _WAVE_KEPT, "box"),
        ("speech probability", SPEECH_BGR, "trace"),
        ("shot cut", _SHOT, "line"),
        ("crop window", _CROP_FILL, "box"),
    ):
        if x + 18 + _text_width(label, 0.42) > img.shape[1]:
            break  # a narrow picture shows the first entries only
        if kind == "box":
            cv2.rectangle(img, (x, y - 10), (x + 12, y + 1), colour, -1)
        elif kind == "trace":
            cv2.line(img, (x, y - 4), (x + 12, y - 4), colour, 2)
        else:
            cv2.line(img, (x + 6, y - 11), (x + 6, y + 2), colour, 2)
        _text(img, label, (x + 18, y), 0.42, _MUTED)
        x += 18 + _text_width(label, 0.42) + 22


def timeline_png(
    analysis: pl.DataFrame, timeline: Timeline, shot_frames: list[int], path: Path, width: int = 1600
) -> Path:
    """Draw the edit over the source's time as a PNG `width` pixels wide; returns `path`."""
    if width < 640:
        raise ValueError(f"width {width} is too narrow for a legible timeline (at least 640)")
    frames = max(1, timeline.frame_count)
    fps = float(timeline.fps_exact)
    plot_w = width - _LEFT - _RIGHT
    left, right = _LEFT, _LEFT + plot_w
    starts, centres = _column_frames(frames, plot_w)
    kept = np.zeros(frames, dtype=bool)
    for r in timeline.ranges:
        kept[min(r.start, frames) : min(r.end, frames)] = True
    kept_cols = kept[centres]

    img = np.full((_HEIGHT, width, 3), _WHITE, dtype=np.uint8)
    kept_s, source_s = timeline.output_duration, timeline.source_duration
    share = 100 * kept_s / source_s if source_s else 0.0
    parts = [
        Path(timeline.source).name,
        f"{timeline.profile} {timeline.output_width}x{timeline.output_height}",
        f"kept {_clock(kept_s, True)} of {_clock(source_s, True)} ({share:.0f}%)",
        f"{len(timeline.ranges)} kept ranges, {len(shot_frames)} shot cuts",
    ]
    # The most important parts first; what does not fit the width is left out, not cut mid-word.
    while len(parts) > 1 and _text_width("  |  ".join(parts), 0.55, bold=True) > width - 16:
        parts.pop(1 if len(parts) == 2 else -1)
    _text(img, "  |  ".join(parts), (8, 22), 0.55, _INK, bold=True)
    _legend(img, 8, 46)

    # Loudness lane: tinted by kept/removed, the envelope filled up from the -60 dB floor.
    top, bottom = _AUDIO
    lane_h = bottom - top
    tint = np.where(kept_cols[:, None], np.array(_KEPT_TINT), np.array(_REMOVED_TINT)).astype(np.uint8)
    img[top:bottom, left:right] = tint[None, :, :]
    _text(img, "loudness", (8, top + 16))
    loud = _loudness(analysis, frames, starts) if timeline.has_audio else None
    if loud is None:
        _centred_text(img, "no audio", left, right, top + lane_h // 2 + 6, 0.6)
    else:
        _text(img, "dBFS", (8, top + 34), 0.38, _MUTED)
        level = np.clip((np.nan_to_num(loud, nan=_DB_FLOOR) - _DB_FLOOR) / -_DB_FLOOR, 0.0, 1.0)
        heights = np.round(level * (lane_h - 2)).astype(np.int64)
        rows = np.arange(lane_h)[:, None]
        filled = rows >= (lane_h - heights)[None, :]
        wave = np.where(kept_cols[:, None], np.array(_WAVE_KEPT), np.array(_WAVE_REMOVED)).astype(np.uint8)
        lane = img[top:bottom, left:right]
        lane[filled] = np.broadcast_to(wave[None, :, :], lane.shape)[filled]
        for db in (-20, -40):
            y = top + round(lane_h * db / _DB_FLOOR)
            img[y, left:right][~filled[y - top]] = _GRID
            _right_text(img, f"{db}", left - 6, y + 4)
        _right_text(img, "0", left - 6, top + 9)
        _right_text(img, f"{_DB_FLOOR:.0f}", left - 6, bottom - 1)
        speech = _speech_columns(analysis, frames, starts)
        if speech is not None:
            _text(img, "speech", (8, top + 52), 0.38, SPEECH_BGR)
            ys = bottom - 1 - np.round(np.clip(speech, 0.0, 1.0) * (lane_h - 3))
            points = np.stack([np.arange(left, right), ys], axis=1).astype(np.int32)
            cv2.polylines(img, [points.reshape(-1, 1, 2)], False, SPEECH_BGR, 2, cv2.LINE_AA)
    cv2.rectangle(img, (left - 1, top - 1), (right, bottom), _GRID, 1)

    # The edit band: exactly two colours, one per column, so its proportions are the kept share.
    top, bottom = _BAND
    band = np.where(kept_cols[:, None], np.array(KEPT_BGR), np.array(REMOVED_BGR)).astype(np.uint8)
    img[top:bottom, left:right] = band[None, :, :]
    _text(img, "edit", (8, bottom - 6))

    # Crop lane: the source's width runs down the lane (left edge at the top); the window is blue.
    top, bottom = _CROP
    lane_h = bottom - top
    _text(img, "crop x", (8, top + 16))
    img[top:bottom, left:right] = _FRAME_AREA
    crop_x = _crop_columns(timeline, centres)
    if crop_x is None or timeline.crop_width is None:
        label = f"no crop: full {timeline.source_width}x{timeline.source_height} frame"
        _centred_text(img, label, left, right, top + lane_h // 2 + 5)
    else:
        _text(img, "source px", (8, top + 34), 0.38, _MUTED)
        scale = lane_h / max(1, timeline.source_width)
        y0 = np.clip(np.round(crop_x * scale), 0, lane_h - 1).astype(np.int64)
        y1 = np.clip(np.round((crop_x + timeline.crop_width) * scale), 1, lane_h).astype(np.int64)
        rows = np.arange(lane_h)[:, None]
        inside = (rows >= y0[None, :]) & (rows < y1[None, :])
        fill = np.where(kept_cols[:, None], np.array(_CROP_FILL), np.array(_CROP_FILL_REMOVED)).astype(np.uint8)
        lane = img[top:bottom, left:right]
        lane[inside] = np.broadcast_to(fill[None, :, :], lane.shape)[inside]
        centre = top + (y0 + y1) / 2
        points = np.stack([np.arange(left, right), centre], axis=1).round().astype(np.int32)
        cv2.polylines(img, [points.reshape(-1, 1, 2)], False, _CROP_LINE, 1, cv2.LINE_AA)
        _right_text(img, "0", left - 6, top + 10)
        _right_text(img, f"{timeline.source_width}", left - 6, bottom - 1)
    cv2.rectangle(img, (left - 1, top - 1), (right, bottom), _GRID, 1)

    # Shot boundaries cross the loudness and crop lanes, not the band (it stays two-coloured).
    for frame in shot_frames:
        if 0 < frame < frames:
            x = left + int(frame * plot_w / frames)
            img[_AUDIO[0] : _AUDIO[1], x] = _SHOT
            img[_CROP[0] : _CROP[1], x] = _SHOT

    # Time axis under everything, in source time.
    y = _CROP[1] + 6
    duration = frames / fps
    step = _tick_step(duration, plot_w)
    cv2.line(img, (left, y), (right - 1, y), _MUTED, 1)
    for k in range(int(duration / step) + 1):
        t = k * step
        x = left + round(t / duration * plot_w) if duration else left
        x = min(x, right - 1)
        cv2.line(img, (x, y), (x, y + 5), _MUTED, 1)
        label = _clock(t, step < 1, clock=duration >= 60)
        lx = min(max(x - _text_width(label, 0.4) // 2, left), right - _text_width(label, 0.4))
        _text(img, label, (lx, y + 20), 0.4, _MUTED)
    _text(img, "source time", (8, y + 20), 0.4, _MUTED)

    ok, encoded = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode the timeline PNG")
    return write_atomic(Path(path), encoded.tobytes())


def thumbnail(video: Path, path: Path, at: float | None = None) -> Path:
    """A JPEG poster frame of `video` at its displayed size; returns `path`.

    With `at` (seconds) that exact moment; without, ffmpeg's `thumbnail` filter picks the most
    typical of the frames in a few seconds starting a third of the way in, past intros and
    fades to black, which a first frame or a fixed time often hits.
    """
    info = probe(video)
    if not info.has_video:
        raise UnsupportedMedia(f"{Path(video).name}: no video stream to take a thumbnail from")
    fps = info.fps or 25.0
    # The container often runs longer than the picture (audio tail): the last frame bounds seeks.
    last = max(0.0, min(info.duration, info.frame_count / fps) - 1 / fps)
    if at is not None:
        start, filters = min(max(0.0, at), last), "null"
    else:
        start = max(0.0, min(last / 3, last - _THUMB_WINDOW_S))
        frames = max(1, min(_THUMB_MAX_FRAMES, round(_THUMB_WINDOW_S * fps)))
        filters = f"thumbnail={frames}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg writes a temporary name, which then replaces `path` in one step.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp.jpg")
    try:
        # A seek past the last decodable frame (a lying duration) yields nothing: then the first frame.
        for seek in dict.fromkeys([start, 0.0]):
            ffmpeg_io.run(
                [ffmpeg_io.FFMPEG, *ffmpeg_io.LOG_ARGS, "-ss", f"{seek:.3f}", *ffmpeg_io.input_args(video),
                 "-map", "0:V:0", "-vf", filters, "-frames:v", "1", "-q:v", "2",
                 "-f", "image2", "-update", "1", "-y", f"file:{tmp}"],
                timeout=120, media=video,
            )  # fmt: skip
            if tmp.is_file() and tmp.stat().st_size > 0:
                tmp.replace(path)
                return path
        raise CorruptMedia(f"{Path(video).name}: no video frame could be decoded for a thumbnail")
    finally:
        tmp.unlink(missing_ok=True)
