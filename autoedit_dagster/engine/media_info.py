"""What a media file is: ffprobe's JSON turned into a validated `MediaInfo`."""

import json
import math
from fractions import Fraction
from pathlib import Path

from pydantic import BaseModel, Field

from . import ffmpeg_io
from .config import InputLimits
from .errors import CorruptMedia, MediaTooLarge, UnsupportedMedia


class MediaInfo(BaseModel):
    """The facts about one input that every later stage relies on."""

    path: str
    container: str
    size_bytes: int
    duration: float = Field(description="Seconds.")
    has_video: bool
    width: int = Field(default=0, description="Displayed width, after rotation.")
    height: int = Field(default=0, description="Displayed height, after rotation.")
    coded_width: int = 0
    coded_height: int = 0
    rotation: int = Field(default=0, description="Display rotation in degrees (0/90/180/270), as ffprobe reports it.")
    fps: float = Field(default=0.0, description="Average frame rate; the analysis and render rate.")
    fps_fraction: str = Field(default="0/1", description="The same rate as an exact fraction.")
    variable_frame_rate: bool = False
    frame_count: int = Field(default=0, description="Frames at `fps` over `duration`.")
    video_codec: str | None = None
    pix_fmt: str | None = None
    has_audio: bool
    audio_codec: str | None = None
    audio_channels: int = 0
    audio_sample_rate: int = 0

    @property
    def fps_exact(self) -> Fraction:
        return Fraction(self.fps_fraction)


def _rate(text: str | None) -> Fraction:
    try:
        rate = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return rate if rate > 0 else Fraction(0)


def _rotation(stream: dict) -> int:
    degrees = 0.0
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            degrees = float(side["rotation"])
    if not degrees and "rotate" in stream.get("tags", {}):
        degrees = float(stream["tags"]["rotate"])
    # Only the quarter turn matters here (it swaps width and height); ffmpeg itself applies it
    # when decoding, so every later stage sees upright frames.
    return round(degrees / 90.0) * 90 % 360


def _float(value: object, default: float = 0.0) -> float:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def _frame_count(video: dict, duration: float, rate: Fraction) -> int:
    if str(video.get("nb_frames", "")).isdigit() and int(video["nb_frames"]) > 0:
        return int(video["nb_frames"])
    return max(1, round((_float(video.get("duration")) or duration) * float(rate)))


def probe(path: str | Path, limits: InputLimits | None = None, started: ffmpeg_io.ProbeRun | None = None) -> MediaInfo:
    """Describe `path`; raise a `MediaError` for anything that is not a readable media file.

    `started`: the ffprobe of `path` already running (started before the engine was imported).
    """
    limits = limits or InputLimits()
    run = started or ffmpeg_io.ProbeRun(path)
    file = run.path
    size = file.stat().st_size
    if size > limits.max_file_bytes:
        run.cancel()
        raise MediaTooLarge(f"{file.name}: {size} bytes is over the {limits.max_file_bytes}-byte limit")
    out = run.output()
    data = json.loads(out or "{}")
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    if not streams:
        raise CorruptMedia(f"{file.name}: no audio or video streams")
    video = next(
        (s for s in streams if s.get("codec_type") == "video"
         and not s.get("disposition", {}).get("attached_pic")),
        None,
    )  # fmt: skip
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _float(fmt.get("duration")) or max((_float(s.get("duration")) for s in streams), default=0.0)
    info: dict = {
        "path": str(file),
        "container": fmt.get("format_name", "unknown"),
        "size_bytes": size,
        "duration": duration,
        "has_video": video is not None,
        "has_audio": audio is not None,
    }
    if video is not None:
        rate = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
        if not rate:
            raise CorruptMedia(f"{file.name}: video stream has no frame rate")
        rate = rate.limit_denominator(1001)
        rotation = _rotation(video)
        coded_w, coded_h = int(video.get("width", 0)), int(video.get("height", 0))
        if not coded_w or not coded_h:
            raise CorruptMedia(f"{file.name}: video stream has no picture size")
        swap = rotation in (90, 270)
        r_rate = _rate(video.get("r_frame_rate"))
        info |= {
            "width": coded_h if swap else coded_w,
            "height": coded_w if swap else coded_h,
            "coded_width": coded_w,
            "coded_height": coded_h,
            "rotation": rotation,
            "fps": float(rate),
            "fps_fraction": f"{rate.numerator}/{rate.denominator}",
            "variable_frame_rate": bool(r_rate) and abs(float(r_rate) - float(rate)) > 0.01,
            "frame_count": _frame_count(video, duration, rate),
            "video_codec": video.get("codec_name"),
            "pix_fmt": video.get("pix_fmt"),
        }
    if audio is not None:
        info |= {
            "audio_codec": audio.get("codec_name"),
            "audio_channels": int(audio.get("channels", 0)),
            "audio_sample_rate": int(audio.get("sample_rate", 0)),
        }
    return MediaInfo(**info)


def check_editable(info: MediaInfo, limits: InputLimits | None = None) -> None:
    """Raise a `MediaError` unless `info` describes a video this pipeline can edit."""
    limits = limits or InputLimits()
    name = Path(info.path).name
    if not info.has_video:
        raise UnsupportedMedia(f"{name}: no video stream (audio-only files are not edited)")
    if info.width > limits.max_width or info.height > limits.max_height:
        raise MediaTooLarge(
            f"{name}: {info.width}x{info.height} is over the {limits.max_width}x{limits.max_height} limit"
        )
    if info.duration > limits.max_duration_s:
        raise MediaTooLarge(f"{name}: {info.duration:.0f} s is over the {limits.max_duration_s:.0f} s limit")
    if info.fps > limits.max_fps:
        raise MediaTooLarge(f"{name}: {info.fps:.1f} fps is over the {limits.max_fps:.0f} fps limit")
