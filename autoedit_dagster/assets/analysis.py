"""The analysis stage: one decode pass, then speech and shots from its table."""

from pathlib import Path

import dagster as dg
import polars as pl

from ..engine.analysis import analyze
from ..engine.config import AnalysisSettings, ShotSettings, SilenceSettings
from ..engine.errors import MediaError
from ..engine.shots import ShotBoundary, detect_shots
from ..engine.speech import NO_SPEECH_PROB, SpeechResult, find_speech
from ..engine.timeline import FrameRange, SpeechSummary
from ..models import SourceVideo
from ..names import ANALYSIS_GROUP
from ..partitions import videos
from ..resources import PARQUET_IO_MANAGER_KEY, MediaStore
from .config import AnalysisConfig, ShotConfig, SilenceConfig, settings_of
from .ingest import IO_RETRY, media_failure

SHOTS_SCHEMA = {
    "frame": pl.Int64, "time": pl.Float64, "kind": pl.Utf8, "score": pl.Float64, "length": pl.Int64,
    "start": pl.Int64,
}  # fmt: skip


# Per-video polars tables of the analysis group, one run per video in backfills.
TABLE_ASSET = {
    "partitions_def": videos,
    "group_name": ANALYSIS_GROUP,
    "io_manager_key": PARQUET_IO_MANAGER_KEY,
    "kinds": {"polars"},
    "backfill_policy": dg.BackfillPolicy.multi_run(1),
}


SPEECH_SCHEMA = {
    "start_frame": pl.Int64, "end_frame": pl.Int64, "start_s": pl.Float64, "end_s": pl.Float64,
    "detector": pl.Utf8, "speech_s": pl.Float64, "notes": pl.Utf8,
}  # fmt: skip
"""One row per kept range. `detector` decided it (`voice` or `loudness`), `speech_s` is the
speech (or sound) found inside it, and `notes` says why everything was kept or why the detector
fell back; both are the same on every row. Tables stored before them have the first four only."""


def ranges_table(result: SpeechResult, fps: float) -> pl.DataFrame:
    ranges = result.ranges
    return pl.DataFrame(
        {
            "start_frame": [r.start for r in ranges],
            "end_frame": [r.end for r in ranges],
            "start_s": [r.start / fps for r in ranges],
            "end_s": [r.end / fps for r in ranges],
            "detector": [result.detector] * len(ranges),
            "speech_s": result.speech_s,
            "notes": ["; ".join(result.notes) or None] * len(ranges),
        },
        schema=SPEECH_SCHEMA,
    )


def table_speech_summary(table: pl.DataFrame) -> SpeechSummary | None:
    """How a stored speech table was judged; None for tables stored before the detector was recorded."""
    if "detector" not in table.columns or not table.height:
        return None
    notes = table["notes"][0]
    return SpeechSummary(
        detector=table["detector"][0], speech_s=float(table["speech_s"].sum()), notes=notes.split("; ") if notes else []
    )


def table_ranges(table: pl.DataFrame) -> list[FrameRange]:
    return [FrameRange(start=s, end=e) for s, e in table.select("start_frame", "end_frame").iter_rows()]


def shots_table(boundaries: list[ShotBoundary]) -> pl.DataFrame:
    return pl.DataFrame([b.model_dump() for b in boundaries], schema=SHOTS_SCHEMA)


def table_shots(table: pl.DataFrame) -> list[ShotBoundary]:
    return [ShotBoundary(**row) for row in table.iter_rows(named=True)]


@dg.asset(
    partitions_def=videos,
    group_name=ANALYSIS_GROUP,
    io_manager_key=PARQUET_IO_MANAGER_KEY,
    kinds={"ffmpeg", "polars"},
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def media_analysis(
    context: dg.AssetExecutionContext, config: AnalysisConfig, store: MediaStore, source_video: SourceVideo
) -> pl.DataFrame:
    """Per-frame loudness, scene change, motion and subject, from one decode pass."""
    with store.local_copy(source_video.upload_key) as path:
        info = source_video.info.model_copy(update={"path": str(Path(path))})
        try:
            frames = analyze(info, settings_of(config, AnalysisSettings))
        except MediaError as exc:
            raise media_failure(exc, source_video.upload_key) from exc
    context.add_output_metadata(
        {
            "frames": frames.height,
            "seconds": frames.height / info.fps,
            "subject_samples": frames["subject_kind"].drop_nulls().len(),
            "face_samples": (frames["subject_kind"] == "face").sum(),
        }
    )
    return frames


@dg.asset(**TABLE_ASSET)
def speech_segments(
    context: dg.AssetExecutionContext, config: SilenceConfig, source_video: SourceVideo, media_analysis: pl.DataFrame
) -> pl.DataFrame:
    """The source ranges worth keeping: speech (voice model) or sound (loudness), with margins."""
    fps = source_video.info.fps_exact
    result = find_speech(media_analysis, fps, settings_of(config, SilenceSettings))
    for note in result.notes:
        (context.log.warning if note == NO_SPEECH_PROB else context.log.info)(note)
    table = ranges_table(result, float(fps))
    kept = float((table["end_s"] - table["start_s"]).sum())
    total = media_analysis.height / float(fps)
    context.add_output_metadata(
        {
            "ranges": table.height,
            "kept_s": kept,
            "removed_s": total - kept,
            "kept_ratio": kept / total if total else 1,
            "detector": result.detector,
            "speech_found_s": sum(result.speech_s),
            "notes": "; ".join(result.notes),
        }
    )
    return table


@dg.asset(**TABLE_ASSET)
def shots(
    context: dg.AssetExecutionContext, config: ShotConfig, source_video: SourceVideo, media_analysis: pl.DataFrame
) -> pl.DataFrame:
    """Shot boundaries: hard cuts and gradual transitions (dissolves, fades)."""
    found = detect_shots(media_analysis, source_video.info.fps_exact, settings_of(config, ShotSettings))
    table = shots_table(found)
    context.add_output_metadata(
        {
            "shots": len(found) + 1,
            "cuts": sum(b.kind == "cut" for b in found),
            "gradual": sum(b.kind == "gradual" for b in found),
        }
    )
    return table
