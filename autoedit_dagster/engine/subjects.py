"""Where the subject is in a small frame: faces first, then motion or contrast (saliency).

The face model is the Haar cascade that ships inside opencv-python-headless 4.x; nothing is
downloaded at run time.
"""

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Subject:
    """A subject box in the coordinates of the frame it was found in."""

    cx: float
    cy: float
    w: float
    h: float
    kind: str  # "face" or "saliency"


@cache
def _face_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():  # pragma: no cover - only with a broken OpenCV install
        raise RuntimeError(f"OpenCV face model missing at {path}; install opencv-python-headless<5")
    return cascade


def find_faces(gray: np.ndarray) -> list[Subject]:
    """Faces in a grayscale frame, largest first."""
    h, w = gray.shape
    # Faces smaller than a seventh of the frame don't steer a crop; skipping them keeps detection
    # cheap. minNeighbors=3 still finds the half-turned heads that 5 misses on small frames.
    return _detect(gray, max(16, min(h, w) // 7), 0)


def _detect(gray: np.ndarray, min_side: int, max_side: int, x0: int = 0, y0: int = 0) -> list[Subject]:
    boxes = _face_cascade().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=1.15, minNeighbors=3,
        minSize=(min_side, min_side), maxSize=(max_side, max_side),
    )  # fmt: skip
    found = [Subject(x0 + x + bw / 2, y0 + y + bh / 2, float(bw), float(bh), "face") for x, y, bw, bh in boxes]
    return sorted(found, key=lambda s: s.w * s.h, reverse=True)


def faces_near(gray: np.ndarray, faces: list[Subject]) -> list[Subject]:
    """The same faces again in a later frame, searched only around where they were and at their size.

    A few percent of a whole-frame search: the window is twice the faces' extent and only scales
    between 0.7x and 1.5x of the known faces are tried.
    """
    h, w = gray.shape
    side = max(f.w for f in faces)
    x0 = max(0, int(min(f.cx - f.w / 2 for f in faces) - side))
    x1 = min(w, int(max(f.cx + f.w / 2 for f in faces) + side + 1))
    y0 = max(0, int(min(f.cy - f.h / 2 for f in faces) - side))
    y1 = min(h, int(max(f.cy + f.h / 2 for f in faces) + side + 1))
    min_side = max(16, int(0.7 * min(f.w for f in faces)))
    if min(x1 - x0, y1 - y0) < min_side:
        return []
    return _detect(gray[y0:y1, x0:x1], min_side, int(1.5 * side) + 1, x0, y0)


def faces_subject(faces: list[Subject]) -> Subject:
    """One box for the faces worth keeping: the largest, plus any at least half its size."""
    keep = [f for f in faces if f.w * f.h >= 0.5 * faces[0].w * faces[0].h]
    x0 = min(f.cx - f.w / 2 for f in keep)
    x1 = max(f.cx + f.w / 2 for f in keep)
    y0 = min(f.cy - f.h / 2 for f in keep)
    y1 = max(f.cy + f.h / 2 for f in keep)
    return Subject((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, "face")


CONTRAST_FLOOR_PERCENTILE = 90.0
"""Local contrast up to this percentile of the frame's counts as background and weighs nothing."""


def salient_subject(gray: np.ndarray, previous: np.ndarray | None) -> Subject:
    """Centre of what moves, or of what stands out in local contrast when nothing moves."""
    small = cv2.resize(gray, (64, max(2, round(64 * gray.shape[0] / gray.shape[1]))), interpolation=cv2.INTER_AREA)
    weight = None
    if previous is not None:
        prev_small = cv2.resize(previous, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        diff = cv2.absdiff(small, prev_small).astype(np.float32)
        diff[diff < 12] = 0
        if diff.sum() > small.size * 0.5:
            weight = diff
    if weight is None:
        blurred = cv2.GaussianBlur(small, (0, 0), 3)
        weight = cv2.absdiff(small, blurred).astype(np.float32)
        # Texture and compression noise give every pixel a little contrast; summed over the frame it
        # outweighs a small subject and drags the centroid to the middle. Weigh only what stands out
        # of the frame's most contrasted tenth (all of it when that tenth is flat).
        standout = np.maximum(weight - np.percentile(weight, CONTRAST_FLOOR_PERCENTILE), 0)
        if standout.sum() > 0:
            weight = standout
    total = float(weight.sum())
    sy, sx = gray.shape[0] / small.shape[0], gray.shape[1] / small.shape[1]
    if total <= 0:
        return Subject(gray.shape[1] / 2, gray.shape[0] / 2, gray.shape[1] / 4, gray.shape[0] / 4, "saliency")
    ys, xs = np.indices(weight.shape, dtype=np.float32)
    cx = float((xs * weight).sum() / total)
    cy = float((ys * weight).sum() / total)
    spread_x = float(np.sqrt(((xs - cx) ** 2 * weight).sum() / total))
    spread_y = float(np.sqrt(((ys - cy) ** 2 * weight).sum() / total))
    return Subject((cx + 0.5) * sx, (cy + 0.5) * sy, 2 * spread_x * sx, 2 * spread_y * sy, "saliency")


FOLLOW_MISSES = 2
"""Samples a followed face may be missed before the tracker stops looking near its last place."""


class SubjectTracker:
    """The subject of successive sampled frames, without a whole-frame face search on each.

    A whole-frame face search costs ~16 ms of CPU on a 256-px frame, so it runs only on every
    `search_every`-th sample and on the first sample of a new shot. On the samples between,
    faces already found are followed in a small window around them; with none to follow, the
    motion/contrast saliency answers, as it does whenever no face is found.
    """

    def __init__(self, search_every: int = 1) -> None:
        self.search_every = max(1, search_every)
        self._faces: list[Subject] = []
        self._since_search = self.search_every  # the first sample is always searched
        self._misses = 0

    def locate(self, gray: np.ndarray, previous: np.ndarray | None, new_shot: bool = False) -> Subject:
        """The subject of the next sample; `new_shot` when the picture may have cut since the last."""
        self._since_search += 1
        following = bool(self._faces) and not new_shot
        faces = faces_near(gray, self._faces) if following else []
        if not faces and (new_shot or (following and self._misses == 0) or self._since_search >= self.search_every):
            faces = find_faces(gray)
            self._since_search = 0
        if faces or not following or self._misses >= FOLLOW_MISSES:
            self._faces, self._misses = faces, 0
        else:
            # The cascade misses a face now and then (a blink, a turn): keep looking where it was
            # for a few samples instead of waiting for the next whole-frame search.
            self._misses += 1
        return faces_subject(faces) if faces else salient_subject(gray, previous)
