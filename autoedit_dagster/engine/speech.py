"""Which frames to keep: the loud stretches of the audio, with margins, as frame ranges.

A frame is loud when its RMS level (`audio_db` from the analysis pass) stands `threshold_db`
above the file's own noise floor, and never below `min_threshold_dbfs`. The floor is a low
percentile of the frame levels, so a noisy room and a studio each get a threshold that suits
them. Then, as auto-editor does:

1. loud stretches whose sound (counting the gaps that the margins and `min_silence_s` would
   close anyway) lasts less than `min_clip_s` are dropped: a click or a thump is not speech;
2. each remaining stretch grows by `margin_before_s` / `margin_after_s`, so the breath before a
   word and the decay after it are not clipped;
3. silences shorter than `min_silence_s` after the margins stay: cutting them only makes the
   edit jumpy without saving time. This holds at the start and end of the file too.

All steps work on arrays of run boundaries (numpy), never frame by frame in Python.
"""

from fractions import Fraction

import numpy as np
import polars as pl

from .analysis import SILENT_DB
from .config import SilenceSettings
from .timeline import FrameRange


def speech_segments(analysis: pl.DataFrame, fps: Fraction, settings: SilenceSettings | None = None) -> list[FrameRange]:
    """The frame ranges to keep, ascending and disjoint.

    Everything is kept when there is nothing to judge by: no audio stream (`audio_db` all null)
    or nothing loud at all (digital silence, a steady hum). An edit that drops every frame
    is never what anyone wants, and the caller can still decide to refuse such a file; the
    empty list is returned only for an empty table.
    """
    settings = settings or SilenceSettings()
    n = analysis.height
    if n == 0:
        return []
    everything = [FrameRange(start=0, end=n)]
    levels = analysis["audio_db"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    measured = levels[np.isfinite(levels)]
    if not len(measured):
        return everything
    # Frames with no samples or digital zeros sit at SILENT_DB; they would drag the floor far
    # below the room noise and let that noise pass as loud, so the floor comes from the rest.
    heard = measured[measured > SILENT_DB + 1.0]
    floor = float(np.percentile(heard if len(heard) else measured, settings.floor_percentile))
    threshold = max(floor + settings.threshold_db, settings.min_threshold_dbfs)
    loud = np.nan_to_num(levels, nan=SILENT_DB) >= threshold

    rate = float(fps)
    before = round(settings.margin_before_s * rate)
    after = round(settings.margin_after_s * rate)
    min_silence = round(settings.min_silence_s * rate)
    min_clip = round(settings.min_clip_s * rate)

    starts, ends = _runs(loud)
    # Group stretches whose gap the margins and the minimum silence will close anyway, so a
    # short word between two pauses of a sentence is judged with its sentence, not as a blip.
    starts, ends = _merge(starts, ends, before + after + min_silence)
    sound = ends - starts >= min_clip
    starts, ends = starts[sound], ends[sound]
    if not len(starts):
        return everything
    starts = np.maximum(starts - before, 0)
    ends = np.minimum(ends + after, n)
    starts, ends = _merge(starts, ends, min_silence)
    # A short silence at either end of the file stays, like any other short silence.
    if starts[0] < min_silence:
        starts[0] = 0
    if n - ends[-1] < min_silence:
        ends[-1] = n
    return [FrameRange(start=s, end=e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def ranges_to_seconds(ranges: list[FrameRange], fps: Fraction) -> list[tuple[float, float]]:
    """Each range as (start, end) in seconds, end exclusive."""
    return [r.seconds(fps) for r in ranges]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every run of True in `mask`."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _merge(starts: np.ndarray, ends: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Join ascending intervals [start, end) separated by fewer than `max_gap` frames."""
    if len(starts) < 2:
        return starts, ends
    reach = np.maximum.accumulate(ends)
    new = np.concatenate(([True], starts[1:] - reach[:-1] >= max(max_gap, 1)))  # touching ones join
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:], [len(starts)])) - 1
    return starts[first], reach[last]
