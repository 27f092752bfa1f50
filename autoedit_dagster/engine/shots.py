"""Shot boundaries from the analysis table: hard cuts and gradual transitions (dissolves, fades).

Works only on the per-frame columns of `analysis.ANALYSIS_SCHEMA`, with no second decode.

**Hard cuts**, frame by frame, as PySceneDetect's AdaptiveDetector: the content change must be at
least `min_cut_score` and stand out `adaptive_ratio` times above the mean of its neighbours (so
sustained fast motion never fires), in one of two ways:

- the full-frame content score (`scene_score`, or the gray `motion` where larger: black-and-white
  pictures score only a third in HSV) is over `cut_threshold` and adaptive, away from black;
- or the 16x16 gray `signature` thumbnail jumps adaptively. The thumbnail averages away pixel-level
  busyness (grain, fine texture) that hides a cut into a busy shot, and it is the only evidence
  trusted next to near-black frames, where hue and saturation are noise (else a fade to black
  reads as several cuts). It also finds jump cuts inside one scene, which score 15-25.

A candidate whose old picture comes back within `flash_window_frames` (any thumbnail before it
closer to one after it than `flash_similarity` times the jump, in its gray pattern and, when the
jump changes the colours, in the `chroma` thumbnail too) is a flash, not a cut: photo flash,
lightning, a white frame, or an insert too short to be a shot. The colour keeps two different
shots of similar brightness either side of a 2-frame shot from reading as one interrupted shot.

**Gradual transitions** are runs of frames whose thumbnail changes more than the surrounding
shots' own motion (`gradual_step_margin` above it), bridged over a repeated frame or a black
hold of up to 1 s, and kept when the run:

- lasts `gradual_min_frames` or more;
- changes the picture by `gradual_threshold` gray levels (0-255, mean absolute difference of the
  thumbnails before and after; in its pattern, brightness aside, unless it passes through black,
  so an exposure drift is not a dissolve);
- goes there in a near straight line (net change / summed per-frame change at least
  `gradual_linearity`, no single frame carrying half of it): a dissolve or fade is a straight
  line, camera motion wanders. A fade through black counts its fade out and fade in separately.

Transitions up to about 1.5 x `gradual_context_s` are found whole; longer ones are found in part
(their middle shifts), and one much slower than `gradual_step_margin` per frame is not seen.

A boundary's `frame` is the first frame of the new shot: for a cut, the first frame after it; for
a gradual transition, its **middle**: the first frame closer to the incoming picture than to the
outgoing one, or the middle of the black of a fade through black. So `shot_ranges` splits a
dissolve fairly between its two shots; `start` and `length` give the transition's span.
Boundaries are at least `min_shot_frames` apart and from frame 0 (cuts first, then the strongest).
Work is vectorised over frames; Python loops run only over candidates.
"""

import bisect
import itertools
from fractions import Fraction
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from .config import ShotSettings
from .timeline import FrameRange

# Gray change per frame (0-255) that compression noise alone stays under; a cut that relies on
# the gray jump must at least exceed it.
_MIN_GRAY_JUMP = 2.0
# Longest black between a fade out and a fade in that still makes one transition (seconds).
_BLACK_HOLD_S = 1.0
# Chroma change (mean over the U and V thumbnails, 0-255) below which a jump does not change the
# colours enough to tell whether they come back: a white flash moves them by 1-2 levels, a cut
# between coloured shots by 10-20. Below it, the gray pattern alone decides a flash.
_MIN_CHROMA_JUMP = 6.0
# Frames per chunk when differencing signatures, so memory stays flat for hour-long files.
_CHUNK = 8192


class ShotBoundary(BaseModel):
    """Where a new shot begins."""

    frame: int = Field(ge=0, description="0-based index of the first frame of the new shot.")
    time: float = Field(description="`frame` in seconds.")
    kind: Literal["cut", "gradual"]
    score: float = Field(
        description="Strength on a 0-255 scale: HSV content change for a cut, the gray change "
        "between the pictures before and after for a gradual transition."
    )
    length: int = Field(ge=1, description="Frames the transition spans; 1 for a cut.")
    start: int = Field(ge=0, description="First frame of the transition; equals `frame` for a cut.")


def detect_shots(analysis: pl.DataFrame, fps: Fraction, settings: ShotSettings | None = None) -> list[ShotBoundary]:
    """Hard cuts and gradual transitions in `analysis` (one row per frame), ordered by frame."""
    settings = settings or ShotSettings()
    n = analysis.height
    if n < 2:
        return []
    # ContentDetector averages |ΔH|, |ΔS| and |ΔV|; in gray pictures (black-and-white film, line
    # art) hue and saturation stay put and a cut scores a third of its luma change, so the gray
    # change (`motion`) stands in wherever it is the larger.
    score = np.maximum(
        analysis["scene_score"].fill_null(0.0).to_numpy().astype(np.float64),
        analysis["motion"].fill_null(0.0).to_numpy().astype(np.float64),
    )
    luma = analysis["luma"].fill_null(strategy="forward").fill_null(0.0).to_numpy().astype(np.float64)
    sig = _signatures(analysis["signature"])
    step = _steps(sig)
    # Tables analysed before the colour thumbnail existed have none: the gray pattern decides.
    chroma = _signatures(analysis["chroma"]) if "chroma" in analysis.columns else None

    cuts = _hard_cuts(score, luma, step, sig, chroma, settings)
    found = [
        ShotBoundary(frame=c, time=float(c / fps), kind="cut", score=round(float(score[c]), 3), length=1, start=c)
        for c in cuts.tolist()
    ]
    found += _gradual(step, luma, sig, cuts, fps, settings)
    return _space_out(found, settings.min_shot_frames)


def _space_out(found: list[ShotBoundary], min_frames: int) -> list[ShotBoundary]:
    """Keep boundaries at least `min_frames` apart (and from frame 0), preferring the surest.

    Cuts are the sharper evidence, so they claim their place first, then the strongest win.
    """
    taken: list[int] = []
    kept: list[ShotBoundary] = []
    for boundary in sorted(found, key=lambda b: (b.kind != "cut", -b.score)):
        at = bisect.bisect_left(taken, boundary.frame)
        near_before = at > 0 and boundary.frame - taken[at - 1] < min_frames
        near_after = at < len(taken) and taken[at] - boundary.frame < min_frames
        if boundary.frame >= min_frames and not near_before and not near_after:
            taken.insert(at, boundary.frame)
            kept.append(boundary)
    return sorted(kept, key=lambda b: b.frame)


def shot_ranges(boundaries: list[ShotBoundary], frame_count: int) -> list[FrameRange]:
    """The shots between `boundaries`, covering frames [0, frame_count) without gaps."""
    if frame_count <= 0:
        return []
    edges = sorted({b.frame for b in boundaries if 0 < b.frame < frame_count})
    points = [0, *edges, frame_count]
    return [FrameRange(start=a, end=b) for a, b in itertools.pairwise(points)]


def _signatures(column: pl.Series) -> np.ndarray:
    """The signature thumbnails as an (n, pixels) uint8 matrix; missing ones repeat the last."""
    filled = column.fill_null(strategy="forward").fill_null(strategy="backward")
    values = filled.to_list()
    if not values or values[0] is None:
        return np.zeros((len(column), 1), dtype=np.uint8)
    return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), -1)


def _steps(sig: np.ndarray) -> np.ndarray:
    """Mean absolute gray change of each frame's thumbnail from the previous one (0 for frame 0)."""
    step = np.zeros(len(sig))
    for lo in range(1, len(sig), _CHUNK):
        hi = min(len(sig), lo + _CHUNK)
        step[lo:hi] = np.abs(sig[lo:hi].astype(np.int16) - sig[lo - 1 : hi - 1]).mean(axis=1)
    return step


def _distance(sig: np.ndarray, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Mean absolute difference between thumbnails `a` and `b` (index arrays, pairwise)."""
    return np.abs(sig[a].astype(np.int16) - sig[b]).mean(axis=-1)


def _pattern_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails once each is shifted to zero mean brightness."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(np.abs((a - a.mean()) - (b - b.mean())).mean())


def _neighbour_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the `window` values each side of every frame, the frame itself excluded."""
    kernel = np.ones(2 * window + 1)
    # "full", then centred: `mode="same"` returns the kernel's length for a clip shorter than it.
    centred = slice(window, window + len(values))
    sums = np.convolve(values, kernel, mode="full")[centred] - values
    counts = np.convolve(np.ones(len(values)), kernel, mode="full")[centred] - 1
    return sums / np.maximum(counts, 1)


def _hard_cuts(
    score: np.ndarray,
    luma: np.ndarray,
    step: np.ndarray,
    sig: np.ndarray,
    chroma: np.ndarray | None,
    settings: ShotSettings,
) -> np.ndarray:
    """Frames that begin a new shot abruptly (sorted indices)."""
    window = settings.adaptive_window_frames
    ratio = settings.adaptive_ratio
    # Two kinds of evidence, each adaptive (PySceneDetect's AdaptiveDetector): the full-frame
    # content score well above its neighbours', or the 16x16 gray thumbnail jumping well above its
    # neighbours'. The thumbnail averages away pixel-level busyness (grain, fine scrolling
    # texture) that would hide a cut into a busy shot from the full-frame score, and it is the
    # only trustworthy evidence next to near-black frames, where hue and saturation are noise.
    adaptive = score >= ratio * _neighbour_mean(score, window)
    dark = np.minimum(luma, np.roll(luma, 1)) < settings.dark_luma
    sure = (score >= settings.cut_threshold) & adaptive & ~dark
    gray_jump = (step >= _MIN_GRAY_JUMP) & (step >= ratio * _neighbour_mean(step, window))
    candidate = (score >= settings.min_cut_score) & (sure | gray_jump)
    candidate[0] = False
    frames = np.flatnonzero(candidate)
    return np.array([c for c in frames if not _is_flash(sig, chroma, int(c), settings)], dtype=np.int64)


def _is_flash(sig: np.ndarray, chroma: np.ndarray | None, cut: int, settings: ShotSettings) -> bool:
    """True when some picture shortly before `cut` comes back shortly after it.

    A real cut leaves the old shot for good, so every frame after it differs from every frame
    before it about as much as the jump itself; a flash (or a brief insert) returns to the
    picture it interrupted. Checking frames on both sides catches the flash's entry and its exit.
    "Comes back" is judged relative to the jump, in the gray pattern and, when the jump changes
    the colours, in colour too.
    """
    w = settings.flash_window_frames
    if w <= 0:
        return False
    before = np.arange(max(0, cut - w), cut)[:, None]
    after = np.arange(cut, min(len(sig), cut + w + 1))[None, :]
    jump = float(_distance(sig, cut - 1, cut))
    if jump <= 0:
        return False
    apart = _distance(sig, before, after) / jump
    if chroma is not None and (colour_jump := float(_distance(chroma, cut - 1, cut))) >= _MIN_CHROMA_JUMP:
        apart = np.maximum(apart, _distance(chroma, before, after) / colour_jump)
    return float(apart.min()) < settings.flash_similarity


def _motion_level(step: np.ndarray, context: int) -> np.ndarray:
    """The gray change per frame that the surrounding shots have anyway (their own motion).

    For each frame, the lower quartile of the `context` frames before it and of those after it,
    and the larger of the two. The quartile ignores a transition filling up to three quarters of
    a side; the larger side keeps the run from spilling into a busier shot after a quiet one.
    """
    before = pl.Series(step).rolling_quantile(0.25, window_size=context, min_samples=1).shift(1)
    after = pl.Series(step[::-1]).rolling_quantile(0.25, window_size=context, min_samples=1).shift(1)
    level = np.fmax(before.to_numpy(), after.to_numpy()[::-1])  # fmax: a missing side (file edge) defers to the other
    return np.nan_to_num(level, nan=0.0)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every run of True in `mask`."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _gradual(
    step: np.ndarray,
    luma: np.ndarray,
    sig: np.ndarray,
    cuts: np.ndarray,
    fps: Fraction,
    settings: ShotSettings,
) -> list[ShotBoundary]:
    """Dissolves and fades, one boundary at the middle of each."""
    n = len(step)
    context = max(1, round(settings.gradual_context_s * float(fps)))
    baseline = _motion_level(step, context)
    elevated = step > baseline + settings.gradual_step_margin
    elevated[0] = False
    # A confirmed cut splits runs: motion around a cut is not a dissolve.
    elevated[cuts] = False
    dark = luma < settings.dark_luma
    starts, ends = _runs(elevated)
    if not len(starts):
        return []
    # Bridge short dips (a repeated frame from a 24->25 fps conversion halfway through a dissolve)
    # and a black hold too short to be a shot of its own (fade out, black, fade in).
    gap_from, gap_to = ends[:-1], starts[1:]
    dark_count = np.concatenate(([0], np.cumsum(~dark)))
    all_dark = dark_count[gap_to] - dark_count[gap_from] == 0
    gap = gap_to - gap_from
    cut_between = np.searchsorted(cuts, gap_to) > np.searchsorted(cuts, gap_from)
    bridge = ((gap <= 2) | (all_dark & (gap <= round(_BLACK_HOLD_S * float(fps))))) & ~cut_between
    keep_start = np.concatenate(([True], ~bridge))
    keep_end = np.concatenate((~bridge, [True]))
    starts, ends = starts[keep_start], ends[keep_end]
    long_enough = ends - starts >= settings.gradual_min_frames
    starts, ends = starts[long_enough], ends[long_enough]

    path = np.concatenate(([0.0], np.cumsum(step)))
    found: list[ShotBoundary] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        last = min(e, n) - 1  # last frame that changed; `s - 1` is the last one before the change
        darks = np.flatnonzero(dark[s : last + 1]) + s
        # A fade through black is two straight lines (to black, from black): judge each half too.
        pieces = [(s - 1, last)]
        if len(darks):
            pieces += [(s - 1, int(darks[0])), (int(darks[-1]), last)]
        strength = 0.0
        for a, b in pieces:
            if b <= a:
                continue
            net = float(_distance(sig, a, b))
            if not len(darks):
                # Without black in between, the new picture must differ in its pattern, not
                # only in brightness: a camera's exposure sliding down is not a dissolve.
                net = min(net, _pattern_distance(sig[a], sig[b]))
            travelled = path[b + 1] - path[a + 1]
            straight = net >= settings.gradual_linearity * travelled
            # Half the change in one frame is a jump (a cut the cut tests turned down), not a fade.
            spread = step[a + 1 : b + 1].max() < 0.5 * travelled
            if net >= settings.gradual_threshold and straight and spread:
                strength = max(strength, net)
        if not strength:
            continue
        if len(darks):
            middle = int(darks[0] + darks[-1] + 1) // 2
        else:
            frames = np.arange(s, last + 1)
            nearer_new = _distance(sig, frames, last) <= _distance(sig, frames, s - 1)
            middle = int(frames[np.argmax(nearer_new)])
        found.append(
            ShotBoundary(
                frame=middle,
                time=float(middle / fps),
                kind="gradual",
                score=round(strength, 3),
                length=last - s + 1,
                start=s,
            )
        )
    return found
