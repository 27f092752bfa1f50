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
    min_side = max(16, min(h, w) // 7)
    boxes = _face_cascade().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=1.15, minNeighbors=3, minSize=(min_side, min_side)
    )
    found = [Subject(x + bw / 2, y + bh / 2, float(bw), float(bh), "face") for x, y, bw, bh in boxes]
    return sorted(found, key=lambda s: s.w * s.h, reverse=True)


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


def locate_subject(gray: np.ndarray, previous: np.ndarray | None) -> Subject:
    faces = find_faces(gray)
    return faces_subject(faces) if faces else salient_subject(gray, previous)
