"""The analysis stage: one decode pass, then speech and shots from its table."""

from pathlib import Path

import dagster as dg
import polars as pl

from ..engine.analysis import analyze
from ..engine.config import AnalysisSettings, ShotSettings, SilenceSettings
from ..engine.errors import MediaError
from ..engine.shots import detect_shots
from ..engine.speech import NO_SPEECH_PROB, find_speech
from ..engine.tables import shots_table, speech_table
from ..models import SourceVideo
from ..names import ANALYSIS_GROUP
from ..partitions import videos
from ..resources import PARQUET_IO_MANAGER_KEY, MediaStore
from .config import AnalysisConfig, ShotConfig, SilenceConfig, settings_of
from .ingest import IO_RETRY, media_failure

# Per-video polars tables of the analysis group, one run per video in backfills.
TABLE_ASSET = {
    "partitions_def": videos,
    "group_name": ANALYSIS_GROUP,
    "io_manager_key": PARQUET_IO_MANAGER_KEY,
    "kinds": {"polars"},
    "backfill_policy": dg.BackfillPolicy.multi_run(1),
}


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
    table = speech_table(result, float(fps))
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
