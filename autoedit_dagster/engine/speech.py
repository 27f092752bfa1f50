"""Which frames to keep: the stretches of speech (or of sound), with margins, as frame ranges.

Two detectors (`SilenceSettings.detector`) mark the frames worth keeping:

- `voice` (default): the voice-activity model's `speech_prob` (analysis pass) is at least
  `voice_threshold`, stretches shorter than `voice.MIN_RUN_S` dropped as blips of the model, each
  ending `voice.HANGOVER_S` earlier (the model's own lag) and starting earlier over the frames
  just before it at `voice_onset_threshold` or above, up to `voice_onset_lookback_s`: the model is
  sure of a quiet voice only a syllable or two in, and less sure of its first sounds. A voice
  that barely stands above the room (`quiet_voice_db`) gets `quiet_voice_lead_s` more margin
  before each stretch: its first sounds lie in the room tone, out of both measures' reach. A
  voice far under the speaker that talks through most of its pauses (chatter, a song's lyrics:
  `background_voice_db`) is background: named in the report, and its stretches alone cut like
  pauses when asked (`cut_background_voice`).
  Pauses between sentences go even under a music bed or street noise, and a
  file in which no voice is found keeps everything ("no speech found: nothing cut") instead of
  losing its music or ambience. Tables stored before `speech_prob` existed fall back to loudness,
  and the result says so.
- `loudness`: the frame's RMS level (`audio_db`) stands `threshold_db` above the file's own
  noise floor, and never below `min_threshold_dbfs`. The floor is a low percentile of the frame
  levels, so a noisy room and a studio each get a threshold that suits them.

Then, for either, as auto-editor does:

1. marked stretches whose sound (counting the gaps that the margins and `min_silence_s` would
   close anyway) lasts less than `min_clip_s` are dropped: a click or a thump is not speech;
2. each remaining stretch grows by `margin_before_s` / `margin_after_s`, so the breath before a
   word and the decay after it are not clipped;
3. silences shorter than `min_silence_s` after the margins stay: cutting them only makes the
   edit jumpy without saving time. This holds at the start and end of the file too.

All steps work on arrays of run boundaries (numpy), never frame by frame in Python.
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np
import polars as pl

from .analysis import SILENT_DB
from .config import SilenceSettings
from .timeline import FrameRange, SpeechSummary
from .voice import HANGOVER_S, MIN_RUN_S

NO_SPEECH = "no speech found: nothing cut"
NOTHING_LOUD = "nothing louder than the noise floor: nothing cut"
NO_AUDIO = "no audio: nothing cut"
NOT_CUT = "cutting is off: every frame kept"
BACKGROUND_VOICE_CUT = "a voice {:.0f} dB under the speaker talks through its pauses: cut there as background"
BACKGROUND_VOICE_KEPT = (
    "a voice {:.0f} dB under the speaker talks through its pauses: kept as speech, so those pauses stay "
    "(--cut-background-voices, cut_background_voice, cuts them)"
)
NO_SPEECH_PROB = "analysis has no speech_prob (stored before the voice detector, or run without it): cut on loudness"

# `_without_background_voice`: the level is averaged over this long (a syllable or two); the
# background fills this share of the speaker's silences, lasts this long in all, and sits less than
# this far over the noise floor; only its stretches this long are cut. Set on the generated cases of
# bench/voice_sceptic.py ("voice bed" should lose its pauses, "quieter voice" keep every word): a
# talking bed or chatter fills most of the speaker's silences and is the floor, where a quieter
# second speaker or the speaker turning away mostly fills fewer of them or stands well over a quiet
# room. Not always: one-sentence replies with 0.2-0.4 s gaps over a noisy room or chatter look like a
# bed to these measures, which is why the cut is asked for (`cut_background_voice`), not the default.
BACKGROUND_WINDOW_S = 0.3
BACKGROUND_SHARE = 0.7
BACKGROUND_MIN_S = 1.0
BACKGROUND_RUN_S = 0.3
BACKGROUND_FLOOR_DB = 9.0
BACKGROUND_AWAY_S, BACKGROUND_AWAY_DB = 4.0, 6.0


@dataclass
class SpeechResult:
    """The kept ranges and how they were judged."""

    ranges: list[FrameRange]
    detector: Literal["voice", "loudness"]
    speech_s: list[float]  # per kept range: the seconds in it marked as speech (or sound)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> SpeechSummary:
        return SpeechSummary(detector=self.detector, speech_s=sum(self.speech_s), notes=self.notes)


def find_speech(analysis: pl.DataFrame, fps: Fraction, settings: SilenceSettings | None = None) -> SpeechResult:
    """The frame ranges to keep, ascending and disjoint, and what decided them.

    Everything is kept when cutting is off (`SilenceSettings.cut`) or there is nothing to judge
    by: no audio stream (`audio_db` all null), no voice found (`voice`), or nothing loud at all
    (`loudness`: digital silence, a steady hum). An edit that drops every frame is never what
    anyone wants; the empty list is returned only for an empty table.
    """
    settings = settings or SilenceSettings()
    n = analysis.height
    detector = settings.detector
    notes: list[str] = []
    if n == 0:
        return SpeechResult([], detector, [], notes)
    everything = [FrameRange(start=0, end=n)]
    if not settings.cut:
        return SpeechResult(everything, detector, [0.0], [NOT_CUT])
    levels = analysis["audio_db"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if not np.isfinite(levels).any():
        return SpeechResult(everything, detector, [0.0], [*notes, NO_AUDIO])
    if detector == "voice" and ("speech_prob" not in analysis.columns or analysis["speech_prob"].is_null().all()):
        detector = "loudness"
        notes.append(NO_SPEECH_PROB)
    if detector == "voice":
        marked = _voiced(analysis["speech_prob"].fill_null(0.0).to_numpy(), float(fps), settings)
        without, under_db = _without_background_voice(marked, levels, float(fps), settings)
        if under_db is not None:
            cut = settings.cut_background_voice
            marked = without if cut else marked
            notes.append((BACKGROUND_VOICE_CUT if cut else BACKGROUND_VOICE_KEPT).format(under_db))
        settings = _for_a_quiet_voice(marked, levels, settings)
    else:
        marked = _loud(levels, settings)
    rate = float(fps)
    kept = _keep(marked, rate, settings)
    if kept is None:
        return SpeechResult(everything, detector, [0.0], [*notes, NO_SPEECH if detector == "voice" else NOTHING_LOUD])
    ranges = [FrameRange(start=s, end=e) for s, e in zip(*(a.tolist() for a in kept), strict=True)]
    # Marked frames in what was kept: the blips dropped as too short are not counted.
    found = [float(np.count_nonzero(marked[r.start : r.end])) / rate for r in ranges]
    return SpeechResult(ranges, detector, found, notes)


def speech_segments(analysis: pl.DataFrame, fps: Fraction, settings: SilenceSettings | None = None) -> list[FrameRange]:
    """The frame ranges to keep (`find_speech` without the account of how)."""
    return find_speech(analysis, fps, settings).ranges


def _floor(levels: np.ndarray, settings: SilenceSettings) -> float:
    """The file's noise floor: the `floor_percentile` of its frame levels (NaN: no samples)."""
    measured = levels[np.isfinite(levels)]
    # Frames with no samples or digital zeros sit at SILENT_DB; they would drag the floor far
    # below the room noise and let that noise pass as loud, so the floor comes from the rest.
    heard = measured[measured > SILENT_DB + 1.0]
    return float(np.percentile(heard if len(heard) else measured, settings.floor_percentile))


def _loud(levels: np.ndarray, settings: SilenceSettings) -> np.ndarray:
    """Frames whose level stands `threshold_db` above the file's noise floor (NaN: no samples)."""
    threshold = max(_floor(levels, settings) + settings.threshold_db, settings.min_threshold_dbfs)
    return np.nan_to_num(levels, nan=SILENT_DB) >= threshold


def _voiced(prob: np.ndarray, rate: float, settings: SilenceSettings) -> np.ndarray:
    """Frames of speech from the model's per-frame probability (see the module's docstring)."""
    starts, ends = _runs(prob >= settings.voice_threshold)
    long = ends - starts >= math.ceil(MIN_RUN_S * rate - 1e-9)
    starts, ends = starts[long], ends[long]
    # Each start moves back to the start of the run of onset-level frames it sits in, bounded.
    onset_starts, _ = _runs(prob >= min(settings.voice_onset_threshold, settings.voice_threshold))
    if len(starts) and len(onset_starts):
        onset = onset_starts[np.searchsorted(onset_starts, starts, side="right") - 1]
        starts = np.maximum(onset, starts - round(settings.voice_onset_lookback_s * rate))
    return _release(_mask(starts, ends, len(prob)), round(HANGOVER_S * rate))


def _without_background_voice(
    marked: np.ndarray, levels: np.ndarray, rate: float, settings: SilenceSettings
) -> tuple[np.ndarray, float | None]:
    """`marked` without the stretches where only a background voice is heard, and how many dB under
    the speaker that voice sits; `marked` itself and None when there is no background voice.

    The speaker's level is the upper quartile of the marked frames' level (averaged over
    `BACKGROUND_WINDOW_S`); marked frames `background_voice_db` or more under it are another voice,
    or the speaker further away. It is background (chatter, a song's lyrics) only when it
    - fills at least `BACKGROUND_SHARE` of the time the speaker is silent: a bed runs under the
      whole file, where a quieter second speaker takes turns between pauses of room tone;
    - is heard alone no longer than the speaker is heard: otherwise the loud voice is the exception
      (a speaker who walked away from the microphone for most of the file);
    - sits less than `BACKGROUND_FLOOR_DB` over the file's noise floor: a bed is the floor, where a
      voice of its own over a quiet room stands well above it.
    Stretches where nothing comes near the speaker's level for `BACKGROUND_AWAY_S` are never
    background: there the quieter voice holds the floor for whole sentences (a partner's turn, the
    speaker stepping back), where a bed only shows in the speaker's pauses. Of the rest, its stretches
    of at least `BACKGROUND_RUN_S` are unmarked; shorter ones are the speaker's own soft syllables.
    """
    if not marked.any():
        return marked, None
    heard = np.nan_to_num(levels, nan=SILENT_DB)
    window = max(1, round(BACKGROUND_WINDOW_S * rate))
    level = 10 * np.log10(np.convolve(10 ** (heard / 10), np.ones(window) / window, mode="same") + 1e-12)
    speaker = float(np.percentile(level[marked], 75))
    low = marked & (level < speaker - settings.background_voice_db)
    # The model bridges 0.3 s gaps between turns, so over a noisy room a partner's or a stepped-back
    # speaker's whole sentences fill the silences as a bed would: the calls, Q&A and stepping-back
    # cases of bench/voice_sceptic.py ("quieter voice") are what this guard keeps.
    starts, ends = _runs(level < speaker - BACKGROUND_AWAY_DB)
    away = ends - starts >= round(BACKGROUND_AWAY_S * rate)
    low &= ~_mask(starts[away], ends[away], len(marked))
    alone, speaking = int(np.count_nonzero(low)), int(np.count_nonzero(marked & ~low))
    if (
        alone < BACKGROUND_MIN_S * rate
        or alone < BACKGROUND_SHARE * (len(marked) - speaking)
        or alone > speaking
        or float(np.median(heard[low])) - _floor(levels, settings) >= BACKGROUND_FLOOR_DB
    ):
        return marked, None
    starts, ends = _runs(low)
    long = ends - starts >= round(BACKGROUND_RUN_S * rate)
    return marked & ~_mask(starts[long], ends[long], len(marked)), speaker - float(np.median(level[low]))


def _for_a_quiet_voice(marked: np.ndarray, levels: np.ndarray, settings: SilenceSettings) -> SilenceSettings:
    """`settings` with `quiet_voice_lead_s` more margin before each stretch of speech when the voice
    barely stands above the room: its marked frames' median level under `quiet_voice_db` over the floor.

    A quiet voice's first sounds sit in the room tone, where the model cannot tell them from it (its
    probability there is that of the room); nothing in the table marks them, so they are kept by time.
    """
    if settings.quiet_voice_lead_s <= 0 or not marked.any():
        return settings
    voiced = levels[marked & np.isfinite(levels)]
    if not len(voiced) or float(np.median(voiced)) - _floor(levels, settings) >= settings.quiet_voice_db:
        return settings
    return settings.model_copy(update={"margin_before_s": settings.margin_before_s + settings.quiet_voice_lead_s})


def _mask(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """A mask of `n` frames, True over each [start, end)."""
    edges = np.zeros(n + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return np.cumsum(edges[:-1]) > 0


def _release(marked: np.ndarray, frames: int) -> np.ndarray:
    """Each marked run ends `frames` earlier (keeping at least its first frame): the model's hangover."""
    if frames <= 0:
        return marked
    starts, ends = _runs(marked)
    out = marked.copy()
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        out[max(start + 1, end - frames) : end] = False
    return out


def _keep(marked: np.ndarray, rate: float, settings: SilenceSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """Kept [start, end) frame arrays from the marked frames; None when no marked stretch is long enough.

    Marks in stretches dropped as too short are cleared from `marked`, so it then counts the
    speech that was kept.
    """
    n = len(marked)
    before = round(settings.margin_before_s * rate)
    after = round(settings.margin_after_s * rate)
    min_silence = round(settings.min_silence_s * rate)
    min_clip = round(settings.min_clip_s * rate)

    starts, ends = _runs(marked)
    # Group stretches whose gap the margins and the minimum silence will close anyway, so a
    # short word between two pauses of a sentence is judged with its sentence, not as a blip.
    starts, ends = _merge(starts, ends, before + after + min_silence)
    sound = ends - starts >= min_clip
    for s, e in zip(starts[~sound].tolist(), ends[~sound].tolist(), strict=True):
        marked[s:e] = False
    starts, ends = starts[sound], ends[sound]
    if not len(starts):
        return None
    starts = np.maximum(starts - before, 0)
    ends = np.minimum(ends + after, n)
    starts, ends = _merge(starts, ends, min_silence)
    # A short silence at either end of the file stays, like any other short silence.
    if starts[0] < min_silence:
        starts[0] = 0
    if n - ends[-1] < min_silence:
        ends[-1] = n
    return starts, ends


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
