"""Where the crop window sits on every frame: AutoFlip-style reframing of 16:9 footage to 9:16 (or 1:1).

Each shot is planned on its own, so the camera can only jump at a cut. Within a shot:

1. The sampled subject centres (analysis.py looks twice a second by default; a followed person wins
   over saliency when a shot has enough samples of one) lose single-sample detector blips (median of three) and are
   interpolated to every frame.
2. The shot gets one camera mode, as in Google's AutoFlip:
   - stationary: the subject's path spans at most `stationary_tolerance`: one fixed window;
   - panning: the path lies within `panning_tolerance` of a straight line the camera may follow:
     one constant-velocity pan;
   - tracking: otherwise. The path is (a) the taut string through a band of +-`deadband` around the
     subject, the path with the fewest and smallest moves, so detector noise never makes the camera
     wobble; (b) a centred moving average just long enough that the acceleration stays within
     `max_acceleration` (zero-phase, so the camera never lags the subject), rounded off by a
     Gaussian of `smoothing_s`.
3. Tracking windows are clamped so the subject's box stays in view: when the smooth path would lose
   the subject, keeping the subject wins over the velocity and acceleration bounds.

Distances in `ReframeSettings` are fractions of the crop width and speeds are crop widths per second,
on both axes, so one setting looks the same on screen at any source size. Rows are planned in
float pixels (`cx`, `cy`: the window centre) and then rounded to even top-left corners (`x`, `y`),
which 4:2:0 chroma needs. Per-frame work is vectorised numpy; Python loops only over shots and bends.
"""

import math
from fractions import Fraction
from typing import Literal

import numpy as np
import polars as pl

from .config import ReframeSettings
from .timeline import FrameRange, crop_size, even

Mode = Literal["stationary", "panning", "tracking"]

PLAN_SCHEMA: dict[str, pl.DataType] = {
    "frame": pl.UInt32(),
    "time": pl.Float64(),
    "shot": pl.UInt32(),
    "x": pl.Int32(),
    "y": pl.Int32(),
    "w": pl.Int32(),
    "h": pl.Int32(),
    "cx": pl.Float64(),
    "cy": pl.Float64(),
    "mode": pl.Utf8(),
}
"""One row per analysis frame. `x, y, w, h`: the crop window (top-left and size, source pixels, x and y
even, size constant). `cx, cy`: the planned window centre before rounding, for sub-pixel renderers and
checks. `shot`: index of the shot the frame belongs to; `mode`: that shot's camera mode."""

TRACKED_KINDS = ("face", "person", "held")
"""Subject kinds that are a person the analysis followed (`subjects.Subject.kind`), not saliency."""

_TOUCH = 1e-9  # slack for float equality in the taut string's contact tests


# ---------------------------------------------------------------------------------------------- paths


def _median3(values: np.ndarray) -> np.ndarray:
    """Median of each sample and its neighbours: drops single-sample blips, keeps monotone runs exact.

    The ends use a linearly extrapolated neighbour, so a blip on the first or last sample goes too.
    """
    if len(values) < 3:
        return values.copy()
    before = np.concatenate([[2 * values[1] - values[2]], values[:-1]])
    after = np.concatenate([values[1:], [2 * values[-2] - values[-3]]])
    return np.median(np.stack([before, values, after]), axis=0)


def _taut_string(t: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Values at `t` of the shortest path between `lower` and `upper`, with free (flat) ends.

    The taut string moves only when the band forces it, and then in straight runs, so noise inside
    the band never reverses its direction. String pulling: from the last contact point keep the range
    of slopes that pass every band so far; when it empties, the string bends at the contact that set
    the violated limit. Each scan is vectorised; windows double so long runs stay linear-ish.
    """
    n = len(t)
    out = np.empty(n)
    # Free start: the string is flat while one level fits every band seen so far.
    run_lo = np.maximum.accumulate(lower)
    run_hi = np.minimum.accumulate(upper)
    broken = np.flatnonzero(run_lo > run_hi + _TOUCH)
    if not len(broken):
        out[:] = (run_lo[-1] + run_hi[-1]) / 2
        return out
    j = int(broken[0])
    if lower[j] > run_hi[j - 1]:  # must climb: flat under the lowest ceiling, bend at its last touch
        level = run_hi[j - 1]
        a = int(np.flatnonzero(upper[:j] <= level + _TOUCH)[-1])
    else:
        level = run_lo[j - 1]
        a = int(np.flatnonzero(lower[:j] >= level - _TOUCH)[-1])
    out[: a + 1] = level
    ca = float(level)
    while a < n - 1:
        window = 64
        while True:
            stop = min(n, a + 1 + window)
            dt = t[a + 1 : stop] - t[a]
            raw_lo = (lower[a + 1 : stop] - ca) / dt
            raw_hi = (upper[a + 1 : stop] - ca) / dt
            s_lo = np.maximum.accumulate(raw_lo)
            s_hi = np.minimum.accumulate(raw_hi)
            bad = np.flatnonzero(s_lo > s_hi + _TOUCH)
            if len(bad) or stop == n:
                break
            window *= 2
        if len(bad):
            j = int(bad[0])  # >= 1: a single band always admits a slope
            if raw_lo[j] > s_hi[j - 1]:  # the new band is above every admissible line: bend at a ceiling
                slope = s_hi[j - 1]
                k = int(np.flatnonzero(raw_hi[:j] <= slope + _TOUCH)[-1])
            else:
                slope = s_lo[j - 1]
                k = int(np.flatnonzero(raw_lo[:j] >= slope - _TOUCH)[-1])
        elif s_lo[-1] <= 0 <= s_hi[-1]:  # free end: stay flat when the remaining bands allow it
            out[a + 1 :] = ca
            break
        elif s_lo[-1] > 0:  # must still rise: up to the floor contact that demands it, then re-plan
            slope = s_lo[-1]
            k = int(np.flatnonzero(raw_lo >= slope - _TOUCH)[-1])
        else:
            slope = s_hi[-1]
            k = int(np.flatnonzero(raw_hi <= slope + _TOUCH)[-1])
        out[a + 1 : a + 2 + k] = ca + slope * dt[: k + 1]
        a += k + 1
        ca = float(out[a])
    return out


def _kernel(box: int, sigma: float) -> np.ndarray:
    """A moving average over `box` frames (odd) convolved with a Gaussian of `sigma` frames; sums to 1."""
    kernel = np.full(box, 1.0 / box)
    if sigma >= 0.5:
        r = int(4 * sigma) + 1
        gauss = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        kernel = np.convolve(kernel, gauss / gauss.sum())
    return kernel


def _smooth(path: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve `path` with a symmetric, positive `kernel` without adding velocity or acceleration.

    The ends are extended point-symmetrically, which continues the velocity and mirrors the
    acceleration, so each output is an average of paths within the input's bounds and the first and
    last values stay put. Smoothing the velocity and integrating keeps monotone stretches exactly
    monotone in floating point (sums of same-signed terms), so rounding to pixels cannot flicker.
    """
    r = len(kernel) // 2
    if r == 0 or len(path) < 2:
        return path
    padded = np.pad(path, r, mode="reflect", reflect_type="odd")  # repeats when r exceeds the shot
    velocity = np.convolve(np.diff(padded), kernel, mode="valid")
    start = float(np.dot(padded[: 2 * r + 1], kernel))
    return start + np.concatenate([[0.0], np.cumsum(velocity)])


# ---------------------------------------------------------------------------------------------- shots


class _Axis:
    """One direction of camera motion: the source size, the crop size and the centre's range."""

    def __init__(self, size: int, crop: int) -> None:
        self.size, self.crop = size, crop
        self.lo, self.hi = crop / 2, size - crop / 2

    @property
    def movable(self) -> bool:
        return self.hi > self.lo


def _shot_ids(frames: np.ndarray, shots: list[FrameRange]) -> np.ndarray:
    """Index of the shot each row belongs to; frames outside every range form shots of their own."""
    cuts = {int(frames[0]), int(frames[-1]) + 1}
    for shot in shots:
        cuts.update((shot.start, shot.end))
    edges = np.array(sorted(c for c in cuts if frames[0] <= c <= frames[-1] + 1))
    ids = np.searchsorted(edges, frames, side="right") - 1
    # Renumber densely so ids count shots that actually hold frames.
    return np.cumsum(np.diff(ids, prepend=ids[0] - 1) != 0) - 1


def _plan_shot(
    frames: np.ndarray,
    samples: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    sizes: tuple[np.ndarray, np.ndarray],
    axes: tuple[_Axis, _Axis],
    unit: float,
    fps: float,
    settings: ReframeSettings,
) -> tuple[Mode, list[np.ndarray]]:
    """Mode and float window centre (x, y) per frame for one shot.

    `samples` indexes the rows with a subject; `unit` is one crop width in pixels.
    """
    n = len(frames)
    if not len(samples):  # nothing to follow: hold the middle of the frame
        return "stationary", [np.full(n, (ax.lo + ax.hi) / 2) for ax in axes]
    t = frames[samples].astype(np.float64)
    targets, reach, cleaned = [], [], []
    for ax, centre, size in zip(axes, centres, sizes, strict=True):
        clean = np.clip(_median3(centre[samples]), ax.lo, ax.hi)
        cleaned.append(clean)
        targets.append(np.interp(frames, t, clean))
        # How far the window centre may sit from the subject with the subject's box still in view.
        half = np.minimum(np.interp(frames, t, size[samples]) / 2, settings.keep_margin * ax.crop)
        reach.append(ax.crop / 2 - half)

    def keeps(path: list[np.ndarray]) -> bool:
        return all(bool(np.all(np.abs(p - s) <= d + 0.5)) for p, s, d in zip(path, targets, reach, strict=True))

    # Stationary: one window for the whole shot when the subject's path spans little.
    fixed = [np.full(n, (s.min() + s.max()) / 2) for s in targets]
    spans = [float(s.max() - s.min()) for s in targets]
    if max(spans) <= settings.stationary_tolerance * unit and keeps(fixed):
        return "stationary", fixed

    # Panning: a straight line close to the path, slow enough and inside the frame on both axes.
    vmax = settings.max_velocity * unit / fps  # pixels per frame
    amax = settings.max_acceleration * unit / fps**2
    offsets = (frames - frames[0]).astype(np.float64)
    lines, pan_ok = [], True
    for ax, s in zip(axes, targets, strict=True):
        if not ax.movable:
            lines.append(s.copy())
            continue
        slope, intercept = np.polyfit(offsets, s, 1) if n > 1 else (0.0, float(s[0]))
        line = intercept + slope * offsets
        lines.append(line)
        pan_ok &= bool(
            abs(slope) <= vmax
            and np.max(np.abs(line - s)) <= settings.panning_tolerance * unit
            and line.min() >= ax.lo - 0.5
            and line.max() <= ax.hi + 0.5
        )
    if pan_ok and keeps(lines):
        return "panning", [np.clip(line, ax.lo, ax.hi) for line, ax in zip(lines, axes, strict=True)]

    # Tracking: taut string (no jitter) -> acceleration-bounded moving average -> light Gaussian.
    paths = []
    band = settings.deadband * unit
    for ax, clean, s, d in zip(axes, cleaned, targets, reach, strict=True):
        if not ax.movable:
            paths.append(s.copy())
            continue
        string = np.interp(frames, t, _taut_string(t, clean - band, clean + band))
        string = np.clip(string, ax.lo, ax.hi)
        # A moving average over m frames changes velocity by at most (v_max - v_min) / m per frame:
        # choose m so that is the acceleration limit, then round off the joins with a Gaussian.
        velocity = np.clip(np.diff(string), -vmax, vmax)
        spread = float(velocity.max() - velocity.min()) if len(velocity) else 0.0
        box = max(1, math.ceil(spread / amax - 1e-9))
        path = _smooth(string, _kernel(box + 1 - box % 2, settings.smoothing_s * fps))
        # Keeping the subject in view beats smoothness; keeping the window in the frame beats both.
        path = np.clip(np.clip(path, s - d, s + d), ax.lo, ax.hi)
        paths.append(path)
    return "tracking", paths


def plan_reframe(
    analysis: pl.DataFrame,
    src_w: int,
    src_h: int,
    fps: Fraction,
    shots: list[FrameRange],
    aspect: tuple[int, int],
    settings: ReframeSettings | None = None,
) -> pl.DataFrame:
    """The crop window of `aspect` on every analysed frame (`PLAN_SCHEMA`), planned shot by shot.

    `analysis` is `analyze()`'s table (subject columns in source pixels); `shots` cover its frames
    (frames outside every range are planned as shots of their own).
    """
    settings = settings or ReframeSettings()
    crop_w, crop_h = crop_size(src_w, src_h, aspect)
    if analysis.height == 0:
        return pl.DataFrame(schema=PLAN_SCHEMA)
    table = analysis.sort("frame")
    frames = table["frame"].to_numpy().astype(np.int64)
    rate = float(fps)
    centres = tuple(table[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in ("subject_cx", "subject_cy"))
    sizes = tuple(table[c].cast(pl.Float64).fill_null(0.0).to_numpy() for c in ("subject_w", "subject_h"))
    sampled = ~np.isnan(centres[0]) & ~np.isnan(centres[1])
    # A followed person (a face, a body, or held while hidden) is what people watch; saliency
    # only fills in for shots without one.
    face = table["subject_kind"].is_in(TRACKED_KINDS).fill_null(False).to_numpy() & sampled
    axes = (_Axis(src_w, crop_w), _Axis(src_h, crop_h))

    shot = _shot_ids(frames, shots)
    starts = np.flatnonzero(np.diff(shot, prepend=-1))
    ends = np.append(starts[1:], len(frames))
    cx, cy = np.empty(len(frames)), np.empty(len(frames))
    modes: list[str] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        samples = np.flatnonzero(sampled[a:b])
        faces = np.flatnonzero(face[a:b])
        if len(faces) and len(faces) >= settings.min_face_share * len(samples):
            samples = faces  # faces are the subject people watch; saliency only fills in without them
        mode, (px, py) = _plan_shot(
            frames[a:b],
            samples,
            (centres[0][a:b], centres[1][a:b]),
            (sizes[0][a:b], sizes[1][a:b]),
            axes,
            float(crop_w),
            rate,
            settings,
        )
        cx[a:b], cy[a:b] = px, py
        modes.append(mode)

    x = np.clip(_even_round_array(cx - crop_w / 2), 0, even(src_w - crop_w))
    y = np.clip(_even_round_array(cy - crop_h / 2), 0, even(src_h - crop_h))
    return pl.DataFrame(
        {
            "frame": frames,
            "time": table["time"],
            "shot": shot,
            "x": x,
            "y": y,
            "w": np.full(len(frames), crop_w),
            "h": np.full(len(frames), crop_h),
            "cx": cx,
            "cy": cy,
            "mode": np.array(modes, dtype=object)[shot],
        },
        schema=PLAN_SCHEMA,
    )


def _even_round_array(values: np.ndarray) -> np.ndarray:
    # `even(v, nearest=True)` for a whole column.
    # Snap float noise first, so a window resting on a rounding edge cannot flicker between two values.
    return (np.floor(np.round(values, 6) / 2 + 0.5) * 2).astype(np.int64)


def mode_per_shot(plan: pl.DataFrame) -> pl.DataFrame:
    """One row per shot of a plan: shot, start, end (exclusive frame numbers) and mode."""
    return (
        plan.group_by("shot", maintain_order=True)
        .agg(
            pl.col("frame").min().alias("start"),
            (pl.col("frame").max() + 1).alias("end"),
            pl.col("mode").first(),
        )
        .sort("shot")
    )


def crop_path_records(plan: pl.DataFrame) -> list[dict]:
    """The crop path as JSON-ready records: {"time", "x", "y", "w", "h"} per frame."""
    return plan.select("time", "x", "y", "w", "h").to_dicts()
