"""The edit's stages, as plain functions of values: the one pipeline `autoedit` and the Dagster
assets both run.

probe and check (`probe_source`) -> analyse (`analysis.analyze`, one decode pass) -> speech
(`speech.find_speech`) and shots (`shots.detect_shots`) -> crop plan (`plan_crop`) -> timeline
(`build_timeline`) -> render (`render.render`) -> previews (`draw_previews`) and exports
(`exports.export_all`). `analyze_source` runs the first four in a row for the CLI; the assets run
each stage as its own asset and store its result (`tables.py` for the ones stored as tables).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import polars as pl

from autoedit_dagster.names import THUMBNAIL_NAME, TIMELINE_PNG_NAME

from .analysis import analyze
from .config import EditProfile, EditSettings, InputLimits, OutputSettings, ReframeSettings, output_size
from .ffmpeg_io import ProbeRun
from .loudness import analysed_loudness
from .media_info import MediaInfo, check_editable, probe
from .previews import thumbnail, timeline_png
from .reframe import crop_path_records, plan_reframe
from .shots import ShotBoundary, detect_shots, shot_ranges
from .speech import find_speech, ranges_to_seconds
from .timeline import FrameRange, SpeechSummary, Timeline, crop_keys

Progress = Callable[[str, float], None]


@dataclass
class SourceAnalysis:
    """What one decode pass tells about a source: the frame table and what is derived from it."""

    info: MediaInfo
    frames: pl.DataFrame
    speech: list[FrameRange]
    shots: list[ShotBoundary]
    speech_summary: SpeechSummary
    timings: dict[str, float] = field(default_factory=dict)


def probe_source(path: str | Path, limits: InputLimits | None = None, started: ProbeRun | None = None) -> MediaInfo:
    """What `path` is, refused (`MediaError`) unless it is a video this edit can take within `limits`.

    `started`: its ffprobe, already running.
    """
    limits = limits or InputLimits()
    info = probe(path, limits, started)
    check_editable(info, limits)
    return info


def analyze_source(
    path: str | Path,
    settings: EditSettings | None = None,
    on_progress: Progress | None = None,
    info: MediaInfo | None = None,
) -> SourceAnalysis:
    """Probe, validate and analyse `path` in one decode pass; speech and shots from its table.

    `info`: `path` already probed (by `probe_source`), so it is not probed again.
    """
    settings = settings or EditSettings()
    started = time.perf_counter()
    info = info or probe_source(path, settings.limits)
    frames = analyze(info, settings.analysis, lambda f: on_progress("analyse", f) if on_progress else None)
    decoded = time.perf_counter()
    speech = find_speech(frames, info.fps_exact, settings.silence)
    shots = detect_shots(frames, info.fps_exact, settings.shots)
    return SourceAnalysis(
        info, frames, speech.ranges, shots, speech.summary,
        timings={"decode_s": decoded - started, "detect_s": time.perf_counter() - decoded},
    )  # fmt: skip


def plan_crop(
    frames: pl.DataFrame,
    info: MediaInfo,
    shots: list[ShotBoundary],
    profile: EditProfile,
    settings: ReframeSettings | None = None,
) -> pl.DataFrame | None:
    """The per-frame crop window for a reframing profile; None for a profile that keeps the frame."""
    if profile.aspect is None:
        return None
    ranges = shot_ranges(shots, frames.height)
    return plan_reframe(frames, info.width, info.height, info.fps_exact, ranges, profile.aspect, settings)


def build_timeline(
    info: MediaInfo,
    frame_count: int,
    keep: list[FrameRange],
    profile: EditProfile,
    crop_path: pl.DataFrame | None,
    uri: str | None = None,
    frames: pl.DataFrame | None = None,
    output: OutputSettings | None = None,
) -> Timeline:
    """Kept ranges, crop keys and output geometry of one profile's edit of `info`.

    With the analysis table `frames`, also the loudness of the kept audio when the analysis kept
    R128's ingredients (`AnalysisSettings.loudness`), so the render needs no measuring pass.
    `output`: the size and frame rate asked for over the profile's (`OutputSettings`).
    """
    output = output or OutputSettings()
    out_w, out_h, _ = output_size(output, profile, info.width, info.height)
    out_fps = output_fps(output, info.fps_exact)
    keys, crop_w, crop_h = [], None, None
    if crop_path is not None and crop_path.height:
        crop_w, crop_h = int(crop_path["w"][0]), int(crop_path["h"][0])
        keys = crop_keys(crop_path["x"].to_list(), crop_path["y"].to_list(), crop_path["frame"].to_list())
    return Timeline(
        source=uri or str(Path(info.path).resolve()),
        profile=profile.name,
        fps=info.fps_fraction,
        frame_count=frame_count,
        source_width=info.width,
        source_height=info.height,
        has_audio=info.has_audio,
        output_width=out_w,
        output_height=out_h,
        crop_width=crop_w,
        crop_height=crop_h,
        ranges=keep,
        crop=keys,
        loudness=analysed_loudness(frames, keep, info.fps_exact, profile.loudness_lufs) if frames is not None else None,
        output_fps=str(out_fps) if out_fps is not None else None,
    )


def output_fps(output: OutputSettings, source_fps: Fraction) -> Fraction | None:
    """The output frame rate asked for, as a fraction; None when it is the source's."""
    if output.fps is None:
        return None
    rate = Fraction(str(output.fps)).limit_denominator(1001)
    return None if rate == source_fps else rate


def draw_previews(
    video: Path, frames: pl.DataFrame, timeline: Timeline, shots: list[ShotBoundary], folder: Path
) -> dict[str, Path]:
    """A poster frame of the rendered `video` and the timeline picture, written into `folder`, by kind."""
    return {
        "thumbnail": thumbnail(video, folder / THUMBNAIL_NAME),
        "timeline_png": timeline_png(frames, timeline, [s.frame for s in shots], folder / TIMELINE_PNG_NAME),
    }


def analysis_summary(source: SourceAnalysis, crop_path: pl.DataFrame | None) -> dict:
    """The JSON object `autoedit analyze --json` prints (its keys are relied on)."""
    info = source.info
    return {
        "duration": source.frames.height / float(info.fps_exact),
        "fps": info.fps,
        "frames": source.frames.height,
        "width": info.width,
        "height": info.height,
        "has_audio": info.has_audio,
        "shots": [{"time": s.time, "frame": s.frame, "kind": s.kind} for s in source.shots],
        "speech": [list(r) for r in ranges_to_seconds(source.speech, info.fps_exact)],
        "speech_detector": source.speech_summary.detector,
        "speech_found_s": source.speech_summary.speech_s,
        "speech_notes": source.speech_summary.notes,
        "crop_path": crop_path_records(crop_path) if crop_path is not None else [],
    }
