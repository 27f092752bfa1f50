"""The sendcmd script that moves the render's crop window: the planned path as straight pieces.

ffmpeg's `sendcmd` keeps about 13 KB per command it parses, for the whole run. One command per
position change (a tracked subject moves the window every few frames) made a 20-minute render
hold 260 MB of commands before its first frame. The planned path is smooth, so it is sent as
straight pieces instead: each command gives the crop a linear expression of the frame number `n`
that stays within `TOLERANCE_PX` of the plan, and the crop filter evaluates it on every frame.
That is about a fifth of the commands, and the window still moves on every frame.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # numpy is imported where used: `autoedit edit` imports this before its first ffmpeg call
    import numpy as np

TOLERANCE_PX = 1.0
"""Largest distance, in source pixels, between a piece and the planned (even) positions it stands for."""


class Piece(NamedTuple):
    """From `start` (a frame) on: position `x + (n - start) * dx`, and the same for y."""

    start: int
    x: int
    dx: float
    y: int
    dy: float


def _steps(positions: list[tuple[int, int, int]], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame x and y from `(frame, x, y)` change points."""
    import numpy as np

    x, y = np.empty(frames), np.empty(frames)
    bounds = [*(f for f, _, _ in positions[1:]), frames]
    for (start, px, py), end in zip(positions, bounds, strict=True):
        x[start:end], y[start:end] = px, py
    return x, y


def linear_pieces(positions: list[tuple[int, int, int]], frames: int, tol: float = TOLERANCE_PX) -> list[Piece]:
    """Fewest greedy straight pieces within `tol` of the step path `positions` over `frames` frames.

    Each piece starts exactly on a planned position and grows while one slope can still pass
    within `tol` of every frame so far (the feasible slopes narrow to a cone), so a jump (a new
    shot) always starts a new piece on its own frame.
    """
    if not positions:
        return []
    frames = max(frames, positions[-1][0] + 1)
    x, y = _steps(positions, frames)
    pieces: list[Piece] = []
    start = 0
    while start < frames:
        lo_x = lo_y = -math.inf
        hi_x = hi_y = math.inf
        end = start + 1
        while end < frames:
            d = end - start
            nlo_x = max(lo_x, (x[end] - tol - x[start]) / d)
            nhi_x = min(hi_x, (x[end] + tol - x[start]) / d)
            nlo_y = max(lo_y, (y[end] - tol - y[start]) / d)
            nhi_y = min(hi_y, (y[end] + tol - y[start]) / d)
            if nlo_x > nhi_x or nlo_y > nhi_y:
                break
            lo_x, hi_x, lo_y, hi_y = nlo_x, nhi_x, nlo_y, nhi_y
            end += 1
        pieces.append(Piece(start, int(x[start]), _slope(lo_x, hi_x), int(y[start]), _slope(lo_y, hi_y)))
        start = end
    return pieces


def _slope(lo: float, hi: float) -> float:
    if lo <= 0.0 <= hi:
        return 0.0  # still: no drift from rounding a near-zero slope
    if not math.isfinite(lo) or not math.isfinite(hi):
        return 0.0  # a one-frame piece
    return round((lo + hi) / 2, 9)


def position_expression(value: int, slope: float, start: int) -> str:
    """A crop x/y expression for ffmpeg: the line, +1 so that crop's round-down-to-even rounds to nearest."""
    if slope == 0.0:
        return str(value + 1)
    sign = "-" if slope < 0 else "+"
    return f"{value + 1}{sign}(n-{start})*{abs(slope):.9f}"


def crop_script(positions: list[tuple[int, int, int]], frames: int, fps: Fraction) -> str:
    """The sendcmd script for a crop filter that starts at `positions[0]` (its x/y options).

    Each command fires at the first frame whose time is at or after half a frame before its piece's
    first frame, so float rounding of frame times can never move it by a frame. Every interval
    ends where the next begins: sendcmd visits each interval still open on every frame.
    """
    pieces = linear_pieces(positions, frames)
    if pieces and pieces[0].dx == 0.0 and pieces[0].dy == 0.0:
        pieces = pieces[1:]  # the filter's own starting position already says it
    lines = []
    # What the filter holds: a command is sent only for the axis whose expression changes.
    held = {"x": position_expression(positions[0][1], 0.0, 0), "y": position_expression(positions[0][2], 0.0, 0)}
    for i, piece in enumerate(pieces):
        start = 0.0 if piece.start == 0 else float((piece.start - Fraction(1, 2)) / fps)
        end = f"-{float((pieces[i + 1].start - Fraction(1, 2)) / fps):.9f}" if i + 1 < len(pieces) else ""
        wanted = {
            "x": position_expression(piece.x, piece.dx, piece.start),
            "y": position_expression(piece.y, piece.dy, piece.start),
        }
        changed = [axis for axis in ("x", "y") if held[axis] != wanted[axis]] or ["x"]
        held = wanted
        commands = ", ".join(f"crop {axis} {wanted[axis]}" for axis in changed)
        lines.append(f"{start:.9f}{end} {commands};")
    return "\n".join(lines) + ("\n" if lines else "")
