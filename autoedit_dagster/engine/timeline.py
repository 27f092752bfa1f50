"""The edit as data: which source frames are kept, and where the crop window sits on each.

Frame numbers are exact (0-based, at the source's average rate `fps`); seconds are derived.
A `Timeline` is what the renderer, the previews and the editor exports all read.
"""

import math
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, Field, model_validator

# Below this the audio is silence (or nearly): normalising it to -14 LUFS would only amplify noise.
SILENCE_LUFS = -70.0


class FrameRange(BaseModel):
    """Source frames [start, end): `end` is exclusive."""

    start: int = Field(ge=0)
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> "FrameRange":
        if self.end <= self.start:
            raise ValueError(f"empty frame range [{self.start}, {self.end})")
        return self

    @property
    def frames(self) -> int:
        return self.end - self.start

    def seconds(self, fps: Fraction) -> tuple[float, float]:
        return float(self.start / fps), float(self.end / fps)


class SpeechSummary(BaseModel):
    """How the kept ranges were chosen (engine/speech.py), as the edit report tells it."""

    detector: Literal["voice", "loudness"] = Field(description="The detector that decided (after any fallback).")
    speech_s: float = Field(description="Seconds marked as speech (`voice`) or sound (`loudness`) that were kept.")
    notes: list[str] = Field(default_factory=list, description="Why everything was kept, or why a fallback.")


class CropKey(BaseModel):
    """From source `frame` on (until the next key), the crop window's top-left corner."""

    frame: int = Field(ge=0)
    x: int = Field(ge=0)
    y: int = Field(ge=0)


class LoudnessMeasurement(BaseModel):
    """EBU R128 measurements of the audio an edit keeps (loudnorm's names for them)."""

    input_i: float = Field(description="Integrated loudness (LUFS).")
    input_tp: float = Field(description="True peak (dBTP).")
    input_lra: float = Field(description="Loudness range (LU).")
    input_thresh: float = Field(description="Gating threshold (LUFS).")
    target_offset: float = Field(description="Gain to the target loudness (LU).")

    @property
    def is_silent(self) -> bool:
        return not math.isfinite(self.input_i) or self.input_i < SILENCE_LUFS


class Timeline(BaseModel):
    """Kept source ranges, the crop path over them, and the output geometry of one profile."""

    source: str = Field(description="Path or URI of the source media.")
    profile: str
    fps: str = Field(description="Exact frame rate as a fraction, e.g. '30000/1001'.")
    frame_count: int = Field(description="Frames in the source at `fps`.")
    source_width: int
    source_height: int
    has_audio: bool
    output_width: int
    output_height: int
    crop_width: int | None = Field(default=None, description="Crop size in source pixels; None: no crop.")
    crop_height: int | None = None
    ranges: list[FrameRange]
    crop: list[CropKey] = Field(default_factory=list, description="Crop keyframes, ascending by frame.")
    loudness: LoudnessMeasurement | None = Field(
        default=None,
        description="R128 measurements of the kept audio, from the analysis; None: the render measures it.",
    )
    output_fps: str | None = Field(
        default=None, description="The output's frame rate as a fraction, when not the source's `fps`."
    )

    @property
    def fps_exact(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def output_fps_exact(self) -> Fraction:
        return Fraction(self.output_fps) if self.output_fps else self.fps_exact

    @property
    def output_frames(self) -> int:
        return sum(r.frames for r in self.ranges)

    @property
    def output_duration(self) -> float:
        return float(self.output_frames / self.fps_exact)

    @property
    def source_duration(self) -> float:
        return float(self.frame_count / self.fps_exact)

    def crop_at(self, frame: int) -> tuple[int, int] | None:
        """Top-left corner of the crop on source `frame`, or None when there is no crop."""
        if self.crop_width is None or not self.crop:
            return None
        x, y = self.crop[0].x, self.crop[0].y
        for key in self.crop:
            if key.frame > frame:
                break
            x, y = key.x, key.y
        return x, y


def crop_keys(xs: list[int], ys: list[int], frames: list[int]) -> list[CropKey]:
    """Keyframes for a per-frame crop path: one key wherever the window moves."""
    keys: list[CropKey] = []
    for frame, x, y in zip(frames, xs, ys, strict=True):
        if not keys or keys[-1].x != x or keys[-1].y != y:
            keys.append(CropKey(frame=frame, x=x, y=y))
    return keys


def even(value: float, *, nearest: bool = False, at_least: int = 0) -> int:
    """`value` as an even number of pixels (4:2:0 video needs even sizes and corners): rounded down,
    or with `nearest` to the nearest even number (halves up), and never below `at_least`."""
    rounded = math.floor(value / 2 + 0.5) * 2 if nearest else int(value) // 2 * 2
    return max(at_least, rounded)


def crop_size(src_w: int, src_h: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """The largest window of `aspect` (w, h) inside a `src_w` x `src_h` frame, in even pixels (>= 2)."""
    aw, ah = aspect
    if aw <= 0 or ah <= 0:
        raise ValueError(f"aspect must be two positive numbers, got {aspect}")
    if src_w < 2 or src_h < 2:
        raise ValueError(f"source {src_w}x{src_h} is too small to crop")
    max_w, max_h = even(src_w), even(src_h)
    if src_w * ah >= src_h * aw:  # source at least as wide as the target: use the full height
        h = max_h
        w = min(max_w, even(h * aw / ah, nearest=True))
    else:
        w = max_w
        h = min(max_h, even(w * ah / aw, nearest=True))
    return max(2, w), max(2, h)
