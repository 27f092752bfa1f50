"""Checks on a finished render: what the file really is, measured, against what the edit asked for.

The measurements run on the published file (not on the renderer's own numbers), so a check
catches a truncated upload or a wrong encode as well as a planning mistake.
"""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from autoedit_dagster.names import (
    DURATION_CHECK,
    FIRST_FRAME_CHECK,
    LOUDNESS_CHECK,
    SIZE_CHECK,
    SYNC_CHECK,
    RenderCheck,
)

from . import ffmpeg_io
from .config import ASPECT_TOLERANCE, EditProfile
from .timeline import Timeline

SILENT_LUFS = -70.0  # ebur128's absolute gate: nothing below it is measured as loudness
LOUDNESS_TOLERANCE_LU = 1.0  # an output this close to its profile's target is on target
BLACK_LUMA = 20.0  # mean 8-bit luma of a frame that looks black (video black is 16)


class RenderQuality(BaseModel):
    """Measured facts about a rendered file."""

    width: int
    height: int
    video_codec: str
    pix_fmt: str
    video_duration: float
    audio_duration: float | None
    integrated_lufs: float | None
    first_frame_luma: float


class CheckOutcome(BaseModel):
    """One check's verdict, with the numbers behind it."""

    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict[str, float | int | str | None]


def _stream_duration(stream: dict, fallback: float) -> float:
    try:
        return float(stream.get("duration") or fallback)
    except ValueError:
        return fallback


def measure_render(path: str | Path) -> RenderQuality:
    """Probe geometry and durations, measure integrated loudness and the first frame's luma."""
    out = ffmpeg_io.run(
        [ffmpeg_io.FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json",
         *ffmpeg_io.input_args(path)], media=path, timeout=120,
    )  # fmt: skip
    data = json.loads(out)
    fmt_duration = float(data.get("format", {}).get("duration") or 0)
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    audio = next((s for s in data["streams"] if s["codec_type"] == "audio"), None)
    lufs = integrated_loudness(path) if audio is not None else None
    raw = subprocess.run(
        [ffmpeg_io.FFMPEG, *ffmpeg_io.LOG_ARGS, *ffmpeg_io.input_args(path), "-frames:v", "1",
         "-vf", "scale=64:64,format=gray", "-f", "rawvideo", "pipe:1"],
        capture_output=True, check=True, timeout=120, **ffmpeg_io.CHILD,
    ).stdout  # fmt: skip
    return RenderQuality(
        width=int(video["width"]),
        height=int(video["height"]),
        video_codec=video.get("codec_name", ""),
        pix_fmt=video.get("pix_fmt", ""),
        video_duration=_stream_duration(video, fmt_duration),
        audio_duration=_stream_duration(audio, fmt_duration) if audio else None,
        integrated_lufs=lufs,
        first_frame_luma=float(np.frombuffer(raw, np.uint8).mean()) if raw else 0.0,
    )


def integrated_loudness(path: str | Path) -> float:
    """The file's integrated loudness (LUFS) as ebur128 measures it; `SILENT_LUFS` for silence."""
    proc = subprocess.run(
        # framelog=verbose keeps the per-frame lines out of the default log level; the summary stays.
        [ffmpeg_io.FFMPEG, "-hide_banner", "-nostdin", "-nostats", *ffmpeg_io.input_args(path), "-vn",
         "-af", "ebur128=framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=False, timeout=600, **ffmpeg_io.CHILD,
    )  # fmt: skip
    found = re.findall(r"I:\s+(-?[\d.]+|-inf) LUFS", proc.stderr)
    return float(found[-1]) if found and found[-1] != "-inf" else SILENT_LUFS


def _outcome(check: RenderCheck, passed: bool, description: str, metadata: dict) -> CheckOutcome:
    return CheckOutcome(
        name=check.name, passed=passed, blocking=check.blocking, description=description, metadata=metadata
    )


def evaluate_render(quality: RenderQuality, timeline: Timeline, profile: EditProfile) -> list[CheckOutcome]:
    """The render checks (`names.RENDER_CHECKS`): size, duration, A/V sync, loudness, first frame."""
    # The longer of a source frame and an output frame: a frame rate of its own rounds the end to its frames.
    frame = float(max(1 / timeline.fps_exact, 1 / timeline.output_fps_exact))
    size_ok = (quality.width, quality.height) == (timeline.output_width, timeline.output_height)
    if profile.aspect is not None:
        aw, ah = profile.aspect
        # A size asked for by height is of the aspect up to its even rounding (`config.output_size`).
        size_ok = size_ok and abs(quality.width * ah / (quality.height * aw) - 1) <= ASPECT_TOLERANCE
    outcomes = [
        _outcome(
            SIZE_CHECK, size_ok,
            f"{quality.width}x{quality.height}, expected {timeline.output_width}x{timeline.output_height}",
            {"width": quality.width, "height": quality.height, "pix_fmt": quality.pix_fmt},
        ),
        _outcome(
            DURATION_CHECK, abs(quality.video_duration - timeline.output_duration) <= frame + 1e-6,
            f"video {quality.video_duration:.3f} s, timeline {timeline.output_duration:.3f} s",
            {"video_s": quality.video_duration, "timeline_s": timeline.output_duration},
        ),
    ]  # fmt: skip
    if quality.audio_duration is None:
        outcomes.append(_outcome(
            SYNC_CHECK, not timeline.has_audio,
            "no audio track" + (" but the source has sound" if timeline.has_audio else ""),
            {"video_s": quality.video_duration, "audio_s": None},
        ))  # fmt: skip
        outcomes.append(_outcome(
            LOUDNESS_CHECK, True, "no audio track", {"integrated_lufs": None, "target_lufs": profile.loudness_lufs}
        ))  # fmt: skip
    else:
        drift = abs(quality.audio_duration - quality.video_duration)
        outcomes.append(_outcome(
            SYNC_CHECK, drift <= frame + 1e-6,
            f"audio and video lengths differ by {drift * 1000:.1f} ms (one frame: {frame * 1000:.1f} ms)",
            {"video_s": quality.video_duration, "audio_s": quality.audio_duration, "drift_ms": drift * 1000},
        ))  # fmt: skip
        lufs = quality.integrated_lufs if quality.integrated_lufs is not None else SILENT_LUFS
        silent = lufs <= SILENT_LUFS
        outcomes.append(_outcome(
            LOUDNESS_CHECK, silent or abs(lufs - profile.loudness_lufs) <= LOUDNESS_TOLERANCE_LU,
            "silent output: nothing to normalise" if silent
            else f"{lufs:.1f} LUFS, target {profile.loudness_lufs:.1f} ± 1 LU",
            {"integrated_lufs": lufs, "target_lufs": profile.loudness_lufs},
        ))  # fmt: skip
    outcomes.append(_outcome(
        FIRST_FRAME_CHECK, quality.first_frame_luma > BLACK_LUMA,
        f"first frame mean luma {quality.first_frame_luma:.1f} (black ≤ {BLACK_LUMA:.0f})",
        {"first_frame_luma": quality.first_frame_luma},
    ))  # fmt: skip
    return outcomes
