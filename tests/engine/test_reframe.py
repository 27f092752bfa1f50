"""Reframe planning: the crop window keeps the subject, stays in the frame and moves like a camera.

Synthetic analysis tables pin the edge cases (a known subject path per frame); the real `analyze`
runs once on a generated moving disc and once on the `carphone` clip.
"""

import dataclasses
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA, analyze
from autoedit_dagster.engine.config import ReframeSettings, get_profile
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.pipeline import analyze_source, plan_crop
from autoedit_dagster.engine.reframe import (
    PLAN_SCHEMA,
    crop_path_records,
    crop_size,
    mode_per_shot,
    plan_reframe,
)
from autoedit_dagster.engine.subjects import salient_subject
from autoedit_dagster.engine.timeline import FrameRange
from testsupport.media_factory import moving_subject_clip
from testsupport.people_factory import CASES, HARD_CASES, crop_scores, person_clip

FPS = 25
SETTINGS = ReframeSettings()


def synthetic(
    cx: np.ndarray | None,
    cy: np.ndarray | float | None = None,
    every: int = 8,
    fps: int = FPS,
    kind: str | np.ndarray = "face",
    size: float = 40.0,
    n: int | None = None,
) -> pl.DataFrame:
    """An analysis table whose subject (centre `cx`, `cy` per frame) is sampled every `every` frames."""
    n = len(cx) if cx is not None else int(n or 0)
    frames = np.arange(n)
    sampled = (frames % every == 0) & (cx is not None)
    xs = np.asarray(cx if cx is not None else np.zeros(n), dtype=float)
    ys = np.broadcast_to(np.asarray(180.0 if cy is None else cy, dtype=float), (n,))
    kinds = np.broadcast_to(np.asarray(kind, dtype=object), (n,))

    def sparse(values: np.ndarray) -> list[float | None]:
        return [float(v) if s else None for v, s in zip(values, sampled, strict=True)]

    columns = {
        "frame": frames,
        "time": frames / fps,
        "luma": np.full(n, 100.0),
        "scene_score": np.zeros(n),
        "motion": np.zeros(n),
        "signature": [b"\0" * 256] * n,
        "chroma": [b"\x80" * 128] * n,
        "subject_cx": sparse(xs),
        "subject_cy": sparse(ys),
        "subject_w": sparse(np.full(n, size)),
        "subject_h": sparse(np.full(n, size)),
        "subject_kind": [str(k) if s else None for k, s in zip(kinds, sampled, strict=True)],
        "audio_db": np.full(n, -20.0),
        "speech_prob": np.ones(n),
        "k_power": np.full(n, 0.01),
        "true_peak": np.full(n, 0.3),
    }
    return pl.DataFrame(columns, schema=ANALYSIS_SCHEMA)


def plan(
    table: pl.DataFrame,
    size: tuple[int, int] = (640, 360),
    aspect: tuple[int, int] = (9, 16),
    shots: list[FrameRange] | None = None,
    settings: ReframeSettings | None = None,
    fps: int = FPS,
) -> pl.DataFrame:
    shots = shots if shots is not None else [FrameRange(start=0, end=table.height)]
    return plan_reframe(table, size[0], size[1], Fraction(fps), shots, aspect, settings)


def assert_window_valid(result: pl.DataFrame, size: tuple[int, int], aspect: tuple[int, int]) -> None:
    w, h = crop_size(size[0], size[1], aspect)
    assert result["w"].unique().to_list() == [w] and result["h"].unique().to_list() == [h]
    assert result["x"].min() >= 0 and result["x"].max() + w <= size[0]
    assert result["y"].min() >= 0 and result["y"].max() + h <= size[1]
    assert (result["x"] % 2 == 0).all() and (result["y"] % 2 == 0).all()


def assert_within_bounds(result: pl.DataFrame, settings: ReframeSettings = SETTINGS, fps: int = FPS) -> None:
    """Per-frame velocity and acceleration within the settings, except across shot boundaries.

    Checked exactly on the planned centre, and on the rounded corner with the rounding allowance
    (each corner is within 1 px of its centre, so a speed may differ by 2 px, an acceleration by 4).
    """
    unit = float(result["w"][0])
    shot = result["shot"].to_numpy()
    same1 = shot[1:] == shot[:-1]
    same2 = same1[1:] & same1[:-1]
    vmax = settings.max_velocity * unit / fps
    amax = settings.max_acceleration * unit / fps**2
    for exact, rounded in (("cx", "x"), ("cy", "y")):
        path, pixels = result[exact].to_numpy(), result[rounded].to_numpy().astype(float)
        assert np.all(np.abs(np.diff(path))[same1] <= vmax + 1e-6)
        assert np.all(np.abs(np.diff(path, 2))[same2] <= amax + 1e-6)
        assert np.all(np.abs(np.diff(pixels))[same1] <= vmax + 2)
        assert np.all(np.abs(np.diff(pixels, 2))[same2] <= amax + 4)


def direction_changes(values: np.ndarray) -> int:
    step = np.diff(values)
    signs = np.sign(step[step != 0])
    return int(np.sum(signs[1:] != signs[:-1]))


def inside_share(result: pl.DataFrame, xs: np.ndarray, ys: np.ndarray) -> float:
    x, y = result["x"].to_numpy(), result["y"].to_numpy()
    w, h = result["w"].to_numpy(), result["h"].to_numpy()
    return float(np.mean((xs >= x) & (xs <= x + w) & (ys >= y) & (ys <= y + h)))


# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    ("src", "aspect", "expected"),
    [
        ((640, 360), (9, 16), (202, 360)),
        ((1920, 1080), (9, 16), (608, 1080)),
        ((853, 479), (9, 16), (268, 478)),
        ((640, 360), (1, 1), (360, 360)),
        ((360, 640), (9, 16), (360, 640)),  # already 9:16: the whole frame
        ((1080, 2400), (9, 16), (1080, 1920)),  # taller than 9:16: full width, the window moves vertically
        ((3, 3), (9, 16), (2, 2)),
    ],
)
def test_crop_size_is_the_largest_even_window(
    src: tuple[int, int], aspect: tuple[int, int], expected: tuple[int, int]
) -> None:
    w, h = crop_size(*src, aspect)
    assert (w, h) == expected
    assert w % 2 == 0 and h % 2 == 0 and w <= src[0] and h <= src[1]


def test_crop_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        crop_size(640, 360, (0, 16))
    with pytest.raises(ValueError):
        crop_size(1, 360, (9, 16))


# -------------------------------------------------------------------------- the real analysis, once


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, np.ndarray]:
    path = tmp_path_factory.mktemp("reframe") / "moving.mp4"
    truth = np.array(moving_subject_clip(path, fps=FPS))
    return analyze(probe(path)), truth


def test_moving_subject_stays_in_the_crop(moving: tuple[pl.DataFrame, np.ndarray]) -> None:
    table, truth = moving
    result = plan(table)
    assert result.height == table.height == len(truth)
    assert_window_valid(result, (640, 360), (9, 16))
    assert inside_share(result, truth[:, 0], truth[:, 1]) >= 0.95
    assert result["mode"].unique().to_list() == ["tracking"]  # there and back: neither still nor a pan


def test_moving_subject_camera_is_bounded_and_smooth(moving: tuple[pl.DataFrame, np.ndarray]) -> None:
    table, _ = moving
    result = plan(table)
    assert_within_bounds(result)
    assert direction_changes(result["cx"].to_numpy()) == 1  # the disc turns once
    assert direction_changes(result["x"].to_numpy()) == 1


def test_a_cut_allows_a_jump_and_nothing_else_does(moving: tuple[pl.DataFrame, np.ndarray]) -> None:
    table, truth = moving
    # Shot 2 starts with the subject far from where shot 1 left the camera.
    shifted = table.with_columns(
        pl.when(pl.col("frame") >= 75)
        .then(640 - pl.col("subject_cx"))
        .otherwise(pl.col("subject_cx"))
        .alias("subject_cx")
    )
    shots = [FrameRange(start=0, end=75), FrameRange(start=75, end=table.height)]
    result = plan(shifted, shots=shots)
    assert result["shot"].to_list() == [0] * 75 + [1] * (table.height - 75)
    assert_within_bounds(result)
    step = np.abs(np.diff(result["x"].to_numpy()))
    assert step[74] > 100  # the jump sits exactly on the cut
    assert step.max() == step[74]
    expected = np.where(np.arange(len(truth)) >= 75, 640 - truth[:, 0], truth[:, 0])
    assert inside_share(result, expected, truth[:, 1]) >= 0.95


def test_saliency_centroid_is_not_pulled_to_the_middle_by_texture() -> None:
    """A small bright subject near the edge is found where it is: texture noise does not pull the
    contrast centroid towards the frame's middle."""
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:144, 0:256]
    for true_x in (31.0, 128.0, 225.0):
        frame = (rng.random((144, 256)) * 40).astype(np.uint8)
        frame[(xs - true_x) ** 2 + (ys - 72) ** 2 < 11.5**2] = 230
        for previous in (None, frame):  # no earlier frame, and a still one: both use contrast
            found = salient_subject(frame, previous)
            assert abs(found.cx - true_x) < 3 and abs(found.cy - 72) < 3
            assert found.w < 40  # the box is the disc's, not the frame's


def test_ten_second_mover_stays_in_the_crop_at_default_settings(tmp_path: Path) -> None:
    """bench_reframe's clip (10 s, subjects sampled at the default 2 fps): the moving disc stays in
    the crop; saliency samples are not biased to the middle."""
    path = tmp_path / "moving10.mp4"
    truth = np.array(moving_subject_clip(path, seconds=10, fps=FPS))
    table = analyze(probe(path))  # default AnalysisSettings: subject_fps = 2
    result = plan(table)  # default ReframeSettings
    assert inside_share(result, truth[:, 0], truth[:, 1]) >= 0.95
    assert_window_valid(result, (640, 360), (9, 16))
    assert_within_bounds(result)
    assert direction_changes(result["cx"].to_numpy()) == 1


def test_carphone_face_stays_in_the_crop(carphone: Path) -> None:
    info = probe(carphone)
    table = analyze(info)
    faces = table.filter(pl.col("subject_kind") == "face")
    assert faces.height > 0, "the face detector should find the driver"
    for aspect in ((9, 16), (1, 1)):
        result = plan(table, (info.width, info.height), aspect, fps=30)
        assert_window_valid(result, (info.width, info.height), aspect)
        joined = faces.join(result, on="frame")
        inside = (joined["subject_cx"] >= joined["x"]) & (joined["subject_cx"] <= joined["x"] + joined["w"])
        assert inside.all()


# ------------------------------------------------------------------------------------- camera modes


def test_still_subject_gets_one_fixed_window_despite_noise_and_a_blip() -> None:
    rng = np.random.default_rng(1)
    n = 250
    xs = 400 + rng.uniform(-0.04, 0.04, n) * 202  # detector noise: +-4 % of the crop width
    xs[80] = 100  # one false detection far away
    result = plan(synthetic(xs))
    assert result["mode"].unique().to_list() == ["stationary"]
    assert result["x"].n_unique() == 1 and result["cx"].n_unique() == 1
    assert abs(result["cx"][0] - 400) < 0.05 * 202


def test_linear_mover_gets_a_steady_pan() -> None:
    n = 300
    xs = np.linspace(500, 1400, n) + np.random.default_rng(2).normal(0, 6, n)
    result = plan(synthetic(xs, 540.0), size=(1920, 1080))
    assert result["mode"].unique().to_list() == ["panning"]
    velocity = np.diff(result["cx"].to_numpy())
    assert np.allclose(velocity, velocity[0]) and velocity[0] > 0
    assert np.all(np.diff(result["x"].to_numpy()) >= 0)
    assert inside_share(result, xs, np.full(n, 540.0)) == 1.0
    assert_within_bounds(result)


def test_tracking_ignores_noise_no_jitter() -> None:
    """A subject walking there and back with a noisy detector: the camera turns exactly once."""
    n = 400
    phase = np.arange(n) / (n - 1)
    truth = 400 + 1100 * (1 - np.abs(2 * phase - 1))
    noisy = truth + np.random.default_rng(3).uniform(-1, 1, n) * 0.06 * 608
    result = plan(synthetic(noisy, 540.0, every=10), size=(1920, 1080))
    assert result["mode"].unique().to_list() == ["tracking"]
    assert direction_changes(result["cx"].to_numpy()) == 1
    assert direction_changes(result["x"].to_numpy()) == 1
    assert inside_share(result, truth, np.full(n, 540.0)) >= 0.95
    assert_within_bounds(result)


def test_tracking_holds_still_while_a_noisy_subject_pauses() -> None:
    """Walk, stop for 8 s, walk on: noise during the stop must not rock the camera back and forth."""
    frames = np.arange(600)
    truth = 500 + 3.0 * np.clip(frames, 0, 150) + 3.0 * np.clip(frames - 450, 0, None)
    noisy = truth + np.random.default_rng(5).uniform(-1, 1, len(frames)) * 0.06 * 608
    result = plan(synthetic(noisy, 540.0, every=10), size=(1920, 1080))
    assert result["mode"].unique().to_list() == ["tracking"]
    assert direction_changes(result["cx"].to_numpy()) == 0
    assert direction_changes(result["x"].to_numpy()) == 0
    assert inside_share(result, truth, np.full(len(frames), 540.0)) == 1.0
    assert_within_bounds(result)


def test_keeping_the_subject_beats_the_speed_limit() -> None:
    slow = ReframeSettings(max_velocity=0.2)
    xs = np.linspace(150, 490, 100)  # 0.85 crop widths per second: faster than the camera may go
    result = plan(synthetic(xs, every=5), settings=slow)
    assert result["mode"].unique().to_list() == ["tracking"]
    assert inside_share(result, xs, np.full(len(xs), 180.0)) == 1.0


def test_faces_win_over_saliency() -> None:
    n = 200
    kinds = np.where(np.arange(n) % 16 == 0, "face", "saliency")  # every other sample is a face
    xs = np.where(kinds == "face", 150.0, 520.0)
    result = plan(synthetic(xs, kind=kinds))
    assert result["mode"].unique().to_list() == ["stationary"]
    assert result["x"][0] <= 150 <= result["x"][0] + result["w"][0]


def test_no_subject_centres_the_window() -> None:
    result = plan(synthetic(None, n=60), size=(853, 479))
    w, _ = crop_size(853, 479, (9, 16))
    assert result["mode"].unique().to_list() == ["stationary"]
    assert result["x"].unique().to_list() == [(853 - w) // 4 * 2]
    assert result["y"].unique().to_list() == [0]
    assert result["cx"][0] == pytest.approx(853 / 2)


def test_shot_without_samples_centres_while_its_neighbours_follow() -> None:
    table = synthetic(np.full(100, 100.0), every=40)  # samples at 0, 40, 80: none in [50, 75)
    shots = [FrameRange(start=0, end=50), FrameRange(start=50, end=75), FrameRange(start=75, end=100)]
    result = plan(table, shots=shots)
    per_shot = result.group_by("shot", maintain_order=True).agg(pl.col("cx").first())["cx"].to_list()
    assert per_shot == pytest.approx([101.0, 320.0, 101.0])  # 101: the left edge holds a window's half


@pytest.mark.parametrize(
    ("size", "aspect"),
    [((853, 479), (9, 16)), ((640, 360), (1, 1)), ((360, 640), (9, 16)), ((1080, 2400), (9, 16))],
)
def test_odd_square_and_portrait_geometry(size: tuple[int, int], aspect: tuple[int, int]) -> None:
    n = 200
    phase = np.arange(n) / (n - 1)
    xs = size[0] * (0.2 + 0.6 * phase)
    ys = size[1] * (0.3 + 0.4 * np.sin(np.pi * phase))  # moves vertically too: the portrait crop follows
    result = plan(synthetic(xs, ys, size=20), size, aspect)
    assert_window_valid(result, size, aspect)
    assert inside_share(result, xs, ys) >= 0.95
    assert_within_bounds(result)
    if size == (360, 640):
        assert result["x"].unique().to_list() == [0] and result["y"].unique().to_list() == [0]


# ---------------------------------------------------------------------------------- small and large


def test_single_frame_and_empty_tables() -> None:
    one = plan(synthetic(np.array([500.0]), 540.0), size=(1920, 1080))
    assert one.height == 1 and one["mode"][0] == "stationary"
    assert one["x"][0] <= 500 <= one["x"][0] + one["w"][0]
    empty = plan(synthetic(None, n=0), shots=[])
    assert empty.height == 0 and empty.schema == pl.Schema(PLAN_SCHEMA)


def test_records_and_modes_for_export() -> None:
    table = synthetic(np.full(50, 300.0))
    result = plan(table, shots=[FrameRange(start=0, end=20), FrameRange(start=20, end=50)])
    assert result.schema == pl.Schema(PLAN_SCHEMA)
    records = crop_path_records(result)
    assert len(records) == 50 and set(records[0]) == {"time", "x", "y", "w", "h"}
    assert isinstance(records[0]["x"], int) and records[1]["time"] == pytest.approx(1 / FPS)
    modes = mode_per_shot(result)
    assert modes.select("start", "end", "mode").rows() == [(0, 20, "stationary"), (20, 50, "stationary")]


def test_plans_thirty_thousand_frames_quickly() -> None:
    n, fps = 30_000, 30
    frames = np.arange(n)
    rng = np.random.default_rng(4)
    xs = 960 + 700 * np.sin(frames / 400) + rng.normal(0, 20, n)
    table = synthetic(xs, 540.0, every=10, fps=fps, size=200)
    for shots in ([FrameRange(start=0, end=n)], [FrameRange(start=s, end=s + 100) for s in range(0, n, 100)]):
        started = time.perf_counter()
        result = plan(table, (1920, 1080), shots=shots, fps=fps)
        elapsed = time.perf_counter() - started
        assert result.height == n
        assert elapsed < 2.0, f"{elapsed:.2f} s for {n} frames in {len(shots)} shots"
        assert inside_share(result, xs, np.full(n, 540.0)) >= 0.95


# ------------------------------------------------------------- people over real footage (issue 12)

FACE_CASES = [name for name, case in CASES.items() if case.figure == "face"]


@pytest.mark.parametrize("name", FACE_CASES)
def test_person_over_cartoon_footage_stays_in_the_crop(tmp_path: Path, name: str) -> None:
    """A face a tenth of the frame tall beside a large cartoon character stays in the 9:16 crop
    (issue 12): small faces are found on the face plane, so saliency does not follow the cartoon.

    640x360 clips: the analysis sees them as it sees 1080p (the same 640-px face plane), and the
    motion is scaled to 1080 lines. Targets are the issue's.
    """
    clip = person_clip(tmp_path / "case.mp4", CASES[name], (640, 360), seconds=6.0)
    source = analyze_source(clip.path)
    scores = crop_scores(plan_crop(source.frames, source.info, source.shots, get_profile("tate")), clip.boxes)
    assert scores["centre_inside"] >= 0.97, scores
    assert scores["box_inside"] >= 0.90, scores
    assert scores["motion_px_1080"] <= 8.0, scores
    kinds = source.frames["subject_kind"].drop_nulls()
    assert (kinds == "saliency").sum() == 0  # followed throughout: found, or held while hidden


def test_hard_cases_have_their_truth_where_the_subject_is_in_the_picture(tmp_path: Path) -> None:
    """`HARD_CASES` truth: no box while nobody is there (and those frames are not scored), and a face
    cut by the frame's edge boxed by its part inside the picture."""
    entering = person_clip(tmp_path / "enter.mp4", HARD_CASES["enters at 3 s"], (320, 180), seconds=4.0)
    assert np.isnan(entering.boxes[:75]).all() and np.isfinite(entering.boxes[75:]).all()
    plan = pl.DataFrame({"x": [0] * 100, "y": [0] * 100, "w": [100] * 100, "h": [180] * 100, "shot": [0] * 100,
                         "cx": [50.0] * 100, "cy": [90.0] * 100})  # fmt: skip
    assert crop_scores(plan, entering.boxes)["centre_inside"] == float(np.mean(entering.boxes[75:, 0] <= 100))
    edge = person_clip(tmp_path / "edge.mp4", HARD_CASES["face at the edge"], (320, 180), seconds=1.0)
    left = edge.boxes[:, 0] - edge.boxes[:, 2] / 2
    assert left.min() >= 0 and np.isclose(left, 0).any()


def test_a_person_walking_into_an_empty_picture_is_followed_within_a_second(tmp_path: Path) -> None:
    """Nobody is there for 3 s, then a face walks in (no cut): the whole picture is searched every
    second while nobody is followed (`face_search_fps`), so the crop finds it within ~1 s, not 4."""
    clip = person_clip(tmp_path / "enter.mp4", HARD_CASES["enters at 3 s"], (640, 360), seconds=6.0)
    source = analyze_source(clip.path)
    faces = source.frames.with_row_index().filter(pl.col("subject_kind") == "face")["index"]
    entered = int(np.isfinite(clip.boxes[:, 0]).argmax())
    assert faces.len() and 0 <= faces.min() - entered <= 1.25 * source.info.fps, (entered, faces.min())
    scores = crop_scores(plan_crop(source.frames, source.info, source.shots, get_profile("tate")), clip.boxes)
    assert scores["centre_inside"] >= 0.97, scores


def test_a_washed_out_face_is_followed(tmp_path: Path) -> None:
    """A face whose contrast is washed out to 0.4 (bench "people, varied", face washed out #0, on its
    path): faces are proposed on the picture with its local contrast levelled, so the face is found on
    16 samples of 17 instead of 10, and the crop keeps it (centre inside 0.69 before)."""
    case = dataclasses.replace(HARD_CASES["face washed out"], path=((0.174, 0.608), (0.688, 0.538), (0.485, 0.577)))
    clip = person_clip(tmp_path / "washed.mp4", case, (960, 540), seconds=8.0)
    source = analyze_source(clip.path)
    kinds = source.frames["subject_kind"].drop_nulls()
    assert (kinds == "saliency").sum() == 0, kinds.value_counts()
    scores = crop_scores(plan_crop(source.frames, source.info, source.shots, get_profile("tate")), clip.boxes)
    assert scores["centre_inside"] >= 0.97 and scores["box_inside"] >= 0.9, scores
