"""crop_script: the planned crop path as a few straight sendcmd pieces that stay on the plan."""

from fractions import Fraction

import numpy as np

from autoedit_dagster.engine.crop_script import TOLERANCE_PX, crop_script, linear_pieces


def even_path(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(frame, x, y) change points of a per-frame path, x rounded down to even as the planner does."""
    out: list[tuple[int, int, int]] = []
    for frame, value in enumerate(values):
        x = int(value) - int(value) % 2
        if not out or out[-1][1] != x:
            out.append((frame, x, 0))
    return out


def step_values(positions: list[tuple[int, int, int]], frames: np.ndarray) -> np.ndarray:
    """The planned x on each of `frames`, from the change points."""
    starts = [f for f, _, _ in positions]
    return np.array([x for _, x, _ in positions])[np.searchsorted(starts, frames, side="right") - 1]


def crop_x(pieces: list, frames: int) -> np.ndarray:
    """What ffmpeg's crop does with the expressions: evaluate, truncate, round down to even."""
    x = np.empty(frames)
    bounds = [*(p.start for p in pieces[1:]), frames]
    for piece, end in zip(pieces, bounds, strict=True):
        n = np.arange(piece.start, end)
        value = np.trunc(piece.x + 1 + (n - piece.start) * piece.dx)
        x[piece.start : end] = value - value % 2
    return x


def test_smooth_tracking_path_needs_few_pieces_and_stays_on_plan() -> None:
    frames = 28_800  # 20 minutes at 24 fps
    t = np.arange(frames)
    planned = 400 + 300 * np.sin(t / 240) + 60 * np.sin(t / 37)
    positions = even_path(planned)
    pieces = linear_pieces(positions, frames)
    assert len(pieces) < len(positions) / 4
    plan = step_values(positions, t)
    assert np.abs(crop_x(pieces, frames) - plan).max() <= 2  # one even step either way


def test_a_jump_starts_a_piece_on_its_own_frame() -> None:
    positions = [(0, 100, 0), (50, 900, 0)]
    pieces = linear_pieces(positions, 80)
    assert [(p.start, p.x, p.dx) for p in pieces] == [(0, 100, 0.0), (50, 900, 0.0)]


def test_pieces_stay_within_tolerance_of_every_planned_frame() -> None:
    rng = np.random.default_rng(7)
    planned = np.cumsum(rng.normal(0, 1.5, 3000)) + 500
    positions = even_path(planned)
    pieces = linear_pieces(positions, 3000)
    frames = np.arange(3000)
    plan = step_values(positions, frames)
    bounds = [*(p.start for p in pieces[1:]), 3000]
    for piece, end in zip(pieces, bounds, strict=True):
        n = np.arange(piece.start, end)
        line = piece.x + (n - piece.start) * piece.dx
        assert np.abs(line - plan[piece.start : end]).max() <= TOLERANCE_PX + 1e-6


def test_script_lines_are_sendcmd_intervals_half_a_frame_early() -> None:
    positions = [(0, 0, 0), *[(f, 2 * f, 0) for f in range(1, 40)]]
    script = crop_script(positions, 40, Fraction(25))
    assert script == "0.000000000 crop x 1+(n-0)*2.000000000;\n"
    moved_later = crop_script([(0, 10, 0), (20, 10, 4), (21, 10, 6)], 30, Fraction(25))
    # Only the axis that changes gets a command: x stays where the filter started it.
    assert moved_later == "0.780000000-0.940000000 crop y 5+(n-20)*1.000000000;\n0.940000000 crop y 7;\n"
