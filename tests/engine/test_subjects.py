"""Subjects: faces of a whole frame, faces followed near their last place, and the tracker's cadence."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoedit_dagster.engine import subjects
from autoedit_dagster.engine.subjects import SubjectTracker, faces_near, faces_subject, find_faces, salient_subject


def gray_frames(path: Path, fps: int, width: int = 256) -> list[np.ndarray]:
    height = round(width * 144 / 176 / 2) * 2  # carphone is 176x144
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"fps={fps},scale={width}:{height},format=gray",
         "-f", "rawvideo", "-"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    return list(np.frombuffer(raw, np.uint8).reshape(-1, height, width))


def locate_subject(gray: np.ndarray, previous: np.ndarray | None) -> subjects.Subject:
    """The reference the tracker saves work against: the whole frame searched on every sample."""
    faces = find_faces(gray)
    return faces_subject(faces) if faces else salient_subject(gray, previous)


@pytest.fixture(scope="module")
def faces_clip(carphone: Path) -> list[np.ndarray]:
    return gray_frames(carphone, fps=4)


def test_face_followed_after_it_moves(faces_clip: list[np.ndarray]) -> None:
    frame = next(f for f in faces_clip if find_faces(f))
    [face, *_] = find_faces(frame)
    moved = np.roll(frame, (6, -9), axis=(0, 1))  # the picture shifts 9 px left, 6 px down
    [again, *_] = faces_near(moved, [face])
    assert again.cx == pytest.approx(face.cx - 9, abs=4)
    assert again.cy == pytest.approx(face.cy + 6, abs=4)


def test_nothing_near_where_no_face_is(faces_clip: list[np.ndarray]) -> None:
    [face, *_] = next(found for f in faces_clip if (found := find_faces(f)))
    blank = np.full_like(faces_clip[0], 128)
    assert faces_near(blank, [face]) == []


def test_tracker_agrees_with_whole_frame_search_at_a_fraction_of_searches(
    faces_clip: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = [locate_subject(g, p) for g, p in zip(faces_clip, [None, *faces_clip], strict=False)]
    searches = 0
    whole_frame = subjects.find_faces

    def counted(gray: np.ndarray) -> list[subjects.Subject]:
        nonlocal searches
        searches += 1
        return whole_frame(gray)

    monkeypatch.setattr(subjects, "find_faces", counted)
    tracker = SubjectTracker(search_every=4)
    tracked = [tracker.locate(g, p) for g, p in zip(faces_clip, [None, *faces_clip], strict=False)]
    assert searches <= len(faces_clip) // 2
    ref_faces = [r for r in reference if r.kind == "face"]
    both = [(r, t) for r, t in zip(reference, tracked, strict=True) if r.kind == t.kind == "face"]
    assert len(both) >= 0.8 * len(ref_faces)
    assert max(abs(r.cx - t.cx) for r, t in both) < 12  # pixels of a 256-px frame


def test_tracker_searches_the_whole_frame_at_a_new_shot(
    faces_clip: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    blank = np.full_like(faces_clip[0], 40)
    tracker = SubjectTracker(search_every=100)
    assert tracker.locate(blank, None).kind == "saliency"  # first sample: searched, nothing found
    face_frame = next(f for f in faces_clip if find_faces(f))
    assert tracker.locate(face_frame, blank).kind == "saliency"  # not yet due, same shot as told
    assert tracker.locate(face_frame, face_frame, new_shot=True).kind == "face"
