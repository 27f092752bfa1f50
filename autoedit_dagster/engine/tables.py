"""The stage results that are stored as polars tables, and back: the kept speech ranges and the
shot boundaries. One place for both directions, so what a stage writes is what the next reads."""

import polars as pl

from .shots import ShotBoundary
from .speech import SpeechResult
from .timeline import FrameRange, SpeechSummary

SHOTS_SCHEMA = {
    "frame": pl.Int64, "time": pl.Float64, "kind": pl.Utf8, "score": pl.Float64, "length": pl.Int64,
    "start": pl.Int64,
}  # fmt: skip

SPEECH_SCHEMA = {
    "start_frame": pl.Int64, "end_frame": pl.Int64, "start_s": pl.Float64, "end_s": pl.Float64,
    "detector": pl.Utf8, "speech_s": pl.Float64, "notes": pl.Utf8,
}  # fmt: skip
"""One row per kept range. `detector` decided it (`voice` or `loudness`), `speech_s` is the
speech (or sound) found inside it, and `notes` says why everything was kept or why the detector
fell back; both are the same on every row. Tables stored before them have the first four only."""


def speech_table(result: SpeechResult, fps: float) -> pl.DataFrame:
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


def speech_ranges(table: pl.DataFrame) -> list[FrameRange]:
    return [FrameRange(start=s, end=e) for s, e in table.select("start_frame", "end_frame").iter_rows()]


def speech_summary(table: pl.DataFrame) -> SpeechSummary | None:
    """How a stored speech table was judged; None for tables stored before the detector was recorded."""
    if "detector" not in table.columns or not table.height:
        return None
    notes = table["notes"][0]
    return SpeechSummary(
        detector=table["detector"][0], speech_s=float(table["speech_s"].sum()), notes=notes.split("; ") if notes else []
    )


def shots_table(boundaries: list[ShotBoundary]) -> pl.DataFrame:
    return pl.DataFrame([b.model_dump() for b in boundaries], schema=SHOTS_SCHEMA)


def table_shots(table: pl.DataFrame) -> list[ShotBoundary]:
    return [ShotBoundary(**row) for row in table.iter_rows(named=True)]
