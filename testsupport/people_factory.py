"""People composited over real moving footage, with the subject's box known on every frame.

The background is the Big Buck Bunny excerpt (its large bright cartoon characters are the
distractors a reframer must not follow), scaled to the clip's size and looped (the loop point is
a cut). The person is either the real face of `carphone` (head and shoulders under a soft mask,
its face box measured once on the pristine 176x144 frames) or a drawn walker seen from behind
(no face). Frames are composited in numpy and encoded by ffmpeg, so every position, size, cover,
turn and cut is exact; `PersonClip.boxes` is the truth per frame (cx, cy, w, h in pixels).
"""

import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
BUNNY = SHARED_MEDIA / "bigbuckbunny.mp4"
CARPHONE = SHARED_MEDIA / "carphone_pristine.mp4"


@dataclass(frozen=True)
class Case:
    """One scene: who, how big, where it goes, and what gets in the way.

    `path` gives the subject's centre as fractions of the frame at a phase 0..1 of the shot;
    `events` are (start_s, end_s, kind) with kind "cover" (a board hides most of the face),
    "profile" (the head turns: squeezed to 45 % of its width) or "absent" (nobody in the picture: no
    box, those frames are not scored); distractors are "face" (a second, smaller face, still),
    "blob" (a large bright disc drifting across), "twin" (the same face at 0.85 of the subject's size,
    still, on the side away from its path: a two-shot), "poster" (the same face 1.6x larger, frozen: a
    picture on the wall, on the side away from the path) and "blob front" (the bright disc passes in
    front of the face halfway through the shot). `tone` (brightness, contrast) is applied to the
    subject's head only, as ffmpeg's eq does: a face in shadow, or washed out. `x_range`, `y_range`:
    where random paths (bench "people, varied") draw their waypoints; below 0 or above 1 is partly out.
    """

    name: str
    figure: str = "face"  # "face" or "walker"
    height: float = 1 / 10  # the face's (walker: the body's) height as a share of the frame's
    path: tuple[tuple[float, float], ...] = ((0.3, 0.45), (0.7, 0.5))  # waypoints, evenly timed
    events: tuple[tuple[float, float, str], ...] = ()
    distractors: tuple[str, ...] = ()
    cut_at: float | None = None  # seconds: the background and the subject's place change here
    after_cut: tuple[tuple[float, float], ...] = ((0.78, 0.4), (0.65, 0.45))
    tone: tuple[float, float] = (0.0, 1.0)
    x_range: tuple[float, float] = (0.12, 0.88)
    y_range: tuple[float, float] = (0.3, 0.65)


@dataclass
class PersonClip:
    path: Path
    boxes: np.ndarray  # (frames, 4): cx, cy, w, h of the subject in pixels
    cuts: list[int] = field(default_factory=list)  # first frames of new shots (the made cut only)


@cache
def _decode(path: Path, size: tuple[int, int], fps: int, extra: str = "") -> np.ndarray:
    """All frames of `path` (BGR, read-only: cached for the next clip of the same size)."""
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout (../shared/media)")
    w, h = size
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"fps={fps},scale={w}:{h}{extra},format=bgr24",
         "-f", "rawvideo", "-"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


@cache
def carphone_faces() -> tuple[np.ndarray, np.ndarray]:
    """The carphone frames (BGR, 176x144) and the face box (x, y, w, h) on each.

    The box is OpenCV's frontal cascade at the native size where the face is 60 px tall; frames
    where it misses (a turn, an open mouth) take the box interpolated from their neighbours.
    """
    cap = cv2.VideoCapture(str(CARPHONE))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    frames, found = [], []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        boxes = cascade.detectMultiScale(gray, 1.05, 4, minSize=(40, 40))
        frames.append(frame)
        found.append(max(boxes, key=lambda b: b[2]) if len(boxes) else None)
    known = [i for i, b in enumerate(found) if b is not None]
    table = np.array([found[i] for i in known], dtype=float)
    boxes = np.stack([np.interp(np.arange(len(frames)), known, table[:, k]) for k in range(4)], axis=1)
    # A running median of 5 takes out the cascade's own jitter.
    padded = np.pad(boxes, ((2, 2), (0, 0)), mode="edge")
    boxes = np.median(np.stack([padded[i : i + len(frames)] for i in range(5)]), axis=0)
    return np.stack(frames), boxes


def _head_mask(w: int, h: int, face: np.ndarray) -> np.ndarray:
    """Soft alpha (0..1) over head and shoulders around a face box (x, y, bw, bh), in a w x h patch."""
    x, y, bw, bh = face
    mask = np.zeros((h, w), np.float32)
    cx, cy = x + bw / 2, y + bh / 2
    cv2.ellipse(mask, (int(cx), int(cy - 0.1 * bh)), (int(0.68 * bw), int(0.9 * bh)), 0, 0, 360, 1.0, -1)
    cv2.ellipse(mask, (int(cx), int(y + 2.2 * bh)), (int(1.25 * bw), int(0.9 * bh)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, bw / 12))


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Blend `patch` into `frame` with its top-left at (x0, y0), clipped to the frame."""
    fh, fw = frame.shape[:2]
    ph, pw = patch.shape[:2]
    ax0, ay0 = max(0, x0), max(0, y0)
    ax1, ay1 = min(fw, x0 + pw), min(fh, y0 + ph)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    p = patch[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0].astype(np.float32)
    a = alpha[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, None]
    region = frame[ay0:ay1, ax0:ax1].astype(np.float32)
    frame[ay0:ay1, ax0:ax1] = (p * a + region * (1 - a)).astype(np.uint8)


def face_at(
    frame: np.ndarray,
    index: int,
    cx: float,
    cy: float,
    face_h: float,
    squeeze: float = 1.0,
    tone: tuple[float, float] = (0.0, 1.0),
) -> tuple:
    """Paste carphone's head (frame `index`, ping-pong) with its face centred at (cx, cy), face_h tall.

    `tone`: (brightness, contrast) as ffmpeg's eq filter applies them (out = (in - 0.5) * contrast +
    0.5 + brightness, on 0..1), to the head only.
    """
    faces, boxes = carphone_faces()
    n = len(faces)
    i = index % (2 * n - 2)
    i = i if i < n else 2 * n - 2 - i
    src, box = faces[i], boxes[i]
    scale = face_h / box[3]
    sw, sh = max(2, round(176 * scale * squeeze)), max(2, round(144 * scale))
    patch = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    fbox = np.array([box[0] * scale * squeeze, box[1] * scale, box[2] * scale * squeeze, box[3] * scale])
    if tone != (0.0, 1.0):
        brightness, contrast = tone
        patch = np.clip((patch.astype(np.float32) - 127.5) * contrast + 127.5 + 255 * brightness, 0, 255)
        patch = patch.astype(np.uint8)
    alpha = _head_mask(sw, sh, fbox)
    fcx, fcy = fbox[0] + fbox[2] / 2, fbox[1] + fbox[3] / 2
    x0, y0 = round(cx - fcx), round(cy - fcy)
    _paste(frame, patch, alpha, x0, y0)
    return x0 + fcx, y0 + fcy, fbox[2], fbox[3]


def _walker(frame: np.ndarray, t: float, cx: float, cy: float, body_h: float) -> tuple:
    """A person seen from behind, walking: hair, shirt, trousers, swinging legs and arms (no face)."""
    u = body_h / 8  # head heights
    top = cy - body_h / 2
    phase = np.sin(2 * np.pi * 1.6 * t)
    layer = np.zeros_like(frame)
    alpha = np.zeros(frame.shape[:2], np.float32)

    def limb(x0: float, y0: float, length: float, angle: float, width: float, colour: tuple) -> None:
        x1, y1 = x0 + length * np.sin(angle), y0 + length * np.cos(angle)
        pts = (int(x0), int(y0)), (int(x1), int(y1))
        cv2.line(layer, *pts, colour, max(1, int(width)), cv2.LINE_AA)
        cv2.line(alpha, *pts, 1.0, max(1, int(width)), cv2.LINE_AA)

    hip_y, shoulder_y = top + 4 * u, top + 1.4 * u
    for side in (-1, 1):  # legs and arms swing in opposite phases
        limb(cx + side * 0.35 * u, hip_y, 4 * u, side * 0.35 * phase, 0.75 * u, (60, 40, 30))
        limb(cx + side * 0.9 * u, shoulder_y + 0.2 * u, 2.8 * u, -side * 0.3 * phase + side * 0.12, 0.45 * u,
             (40, 90, 170))  # fmt: skip
    torso = np.array([[cx - 1.0 * u, shoulder_y], [cx + 1.0 * u, shoulder_y], [cx + 0.8 * u, hip_y + 0.3 * u],
                      [cx - 0.8 * u, hip_y + 0.3 * u]], np.int32)  # fmt: skip
    cv2.fillConvexPoly(layer, torso, (40, 90, 170), cv2.LINE_AA)
    cv2.fillConvexPoly(alpha, torso, 1.0, cv2.LINE_AA)
    head = (int(cx), int(top + 0.55 * u)), (int(0.42 * u), int(0.55 * u))
    cv2.ellipse(layer, *head, 0, 0, 360, (25, 35, 50), -1, cv2.LINE_AA)
    cv2.ellipse(alpha, *head, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    # Shading and cloth texture, so the figure is not a flat cut-out.
    noise = np.random.default_rng(int(t * 1000)).normal(0, 8, frame.shape).astype(np.float32)
    shaded = np.clip(layer.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    a = alpha[..., None]
    frame[:] = (shaded * a + frame * (1 - a)).astype(np.uint8)
    return cx, cy, 2.2 * u, body_h


def _along(path: tuple[tuple[float, float], ...], phase: float) -> tuple[float, float]:
    """Position at `phase` 0..1 along evenly timed waypoints, eased so the figure starts and stops softly."""
    if len(path) == 1:
        return path[0]
    pos = phase * (len(path) - 1)
    i = min(int(pos), len(path) - 2)
    f = pos - i
    f = f * f * (3 - 2 * f)
    (x0, y0), (x1, y1) = path[i], path[i + 1]
    return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f


def person_clip(
    path: Path, case: Case, size: tuple[int, int] = (640, 360), seconds: float = 5.0, fps: int = 25
) -> PersonClip:
    """Render `case` to `path` (H.264, no audio) and return the subject's box on every frame."""
    w, h = size
    n = round(seconds * fps)
    film = _decode(BUNNY, size, fps)
    other = _decode(BUNNY, size, fps, ",hflip,eq=brightness=0.06:saturation=1.3")
    cut = round(case.cut_at * fps) if case.cut_at is not None else None
    enc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(fps),
         "-i", "-", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert enc.stdin is not None
    boxes = []
    for i in range(n):
        t = i / fps
        second = cut is not None and i >= cut
        frame = (other[(i - cut + 20) % len(other)] if second else film[i % len(film)]).copy()  # type: ignore[operator]
        start, end = (cut, n) if second else (0, cut or n)
        phase = (i - start) / max(1, end - start - 1)
        fx, fy = _along(case.after_cut if second else case.path, phase)
        if "blob" in case.distractors:  # a big bright disc drifting the other way, a third of the frame tall
            bx = w * (0.8 - 0.5 * i / n)
            cv2.circle(frame, (int(bx), int(0.55 * h)), int(h / 6), (120, 235, 255), -1, cv2.LINE_AA)
        if "face" in case.distractors:  # a second face, half the subject's size, still
            face_at(frame, i + 40, w * (0.12 if fx > 0.3 else 0.88), h * 0.3, case.height * h / 2)
        away = 0.1 if np.mean([x for x, _ in case.path]) > 0.5 else 0.9  # the side away from the path
        if "twin" in case.distractors:  # a second person of about the subject's size (here its very face)
            face_at(frame, i + 60, w * (away + 0.08 if away < 0.5 else away - 0.08), h * 0.45, 0.85 * case.height * h)
        if "poster" in case.distractors:  # the same face, larger and frozen: a picture on the wall
            face_at(frame, 30, w * (away - 0.02 if away < 0.5 else away + 0.02), h * 0.4, 1.6 * case.height * h)
        events = {kind for a, b, kind in case.events if a <= t < b}
        if "absent" in events:
            box: tuple = (np.nan,) * 4
        elif case.figure == "walker":
            box = _walker(frame, t, fx * w, fy * h, case.height * h)
        else:
            box = face_at(frame, i, fx * w, fy * h, case.height * h, 0.45 if "profile" in events else 1.0, case.tone)
            if "cover" in events:  # a board in front of the face: three quarters of it hidden
                bx, by, bw, bh = box
                cv2.rectangle(frame, (int(bx - 0.8 * bw), int(by - 0.7 * bh)), (int(bx + 0.8 * bw), int(by + 0.3 * bh)),
                              (70, 110, 150), -1)  # fmt: skip
        if "blob front" in case.distractors:
            # A bright disc crossing in front of the face halfway through, at a fixed pace relative to
            # the face (0.6 of the width per clip), so the face is wholly hidden for ~20 % of the clip
            # whatever its path. Relative to the face, not to a fixed place: a disc a random path runs
            # along with could hide the face from the first frame, and then nothing in the picture
            # says where it is.
            bx = fx * w + w * 0.6 * (0.5 - i / max(1, n - 1))
            cv2.circle(frame, (int(bx), int(fy * h)), int(h / 6), (120, 235, 255), -1, cv2.LINE_AA)
        if np.isfinite(box[0]):  # partly out of the picture: the part in it is what can be kept in view
            x0, x1 = max(0.0, box[0] - box[2] / 2), min(float(w), box[0] + box[2] / 2)
            y0, y1 = max(0.0, box[1] - box[3] / 2), min(float(h), box[1] + box[3] / 2)
            if (x1 - x0, y1 - y0) != (box[2], box[3]):
                box = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
        boxes.append(box)
        enc.stdin.write(frame.tobytes())
    enc.stdin.close()
    assert enc.wait() == 0
    return PersonClip(path, np.array(boxes, dtype=float), [cut] if cut is not None else [])


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("face 1/6", height=1 / 6, path=((0.25, 0.4), (0.7, 0.45), (0.55, 0.5))),
        Case("face 1/10", height=1 / 10, path=((0.72, 0.35), (0.3, 0.5))),
        Case("face 1/15", height=1 / 15, path=((0.2, 0.55), (0.5, 0.35), (0.8, 0.5))),
        Case("face 1/10 + bright blob", height=1 / 10, path=((0.3, 0.45), (0.45, 0.5)), distractors=("blob",)),
        Case("face 1/10 + second face", height=1 / 10, path=((0.55, 0.45), (0.7, 0.5)), distractors=("face",)),
        Case("face 1/10 covered 2 s", height=1 / 10, path=((0.65, 0.45), (0.4, 0.5)), events=((1.5, 3.5, "cover"),)),
        Case("face 1/10 turns 2 s", height=1 / 10, path=((0.35, 0.5), (0.6, 0.4)), events=((1.5, 3.5, "profile"),)),
        Case("walker 1/2", figure="walker", height=1 / 2, path=((0.15, 0.55), (0.85, 0.55))),
        Case("face 1/10 cut", height=1 / 10, path=((0.25, 0.45), (0.35, 0.5)), cut_at=2.5),
    )
}


TWO_SHOT: dict = {"path": ((0.45, 0.45), (0.6, 0.5)), "x_range": (0.35, 0.65), "y_range": (0.4, 0.55),
                  "distractors": ("twin",)}  # fmt: skip
"""The followed face near the middle, the other person at the side: the followed one is the main subject."""
HARD_CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("two-shot, covered 1.5 s", events=((2.0, 3.5, "cover"),), **TWO_SHOT),
        Case("two-shot, turns 2 s", events=((2.0, 4.0, "profile"),), **TWO_SHOT),
        Case("enters at 3 s", path=((0.3, 0.45), (0.6, 0.5)), events=((0.0, 3.0, "absent"),)),
        Case("face at the edge", height=1 / 6, path=((0.01, 0.45), (0.05, 0.5)), x_range=(-0.01, 0.06)),
        Case("face in shadow", tone=(-0.3, 1.0)),
        Case("face washed out", tone=(0.0, 0.4)),
        Case("face beside its poster", path=((0.35, 0.45), (0.6, 0.5)), distractors=("poster",)),
        Case("face behind a bright disc", path=((0.3, 0.45), (0.6, 0.5)), distractors=("blob front",)),
    )
}
"""Cases found by a sceptic's look at what the benches did not cover: a two-shot whose followed face
is covered (or turns), a person entering an empty picture, a face cut by the frame's edge, one in
shadow or washed out, the same face as a larger still poster beside it, and a bright disc passing in
front of the face."""


def crop_scores(plan: pl.DataFrame, boxes: np.ndarray) -> dict[str, float]:
    """How well a crop plan keeps the true boxes: the issue's three measures.

    `centre_inside` and `box_inside`: shares of frames whose subject centre / whole box lies in the
    window; `motion_px_1080`: mean movement of the window's centre per frame inside shots, in
    pixels of a 1080-line picture (so clips made small for speed compare with the 1080p target).
    """
    x, y = plan["x"].to_numpy().astype(float), plan["y"].to_numpy().astype(float)
    w, h = plan["w"].to_numpy().astype(float), plan["h"].to_numpy().astype(float)
    n = min(len(x), len(boxes))
    x, y, w, h, b = x[:n], y[:n], w[:n], h[:n], boxes[:n]
    cx, cy, bw, bh = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    seen = np.isfinite(cx)  # frames without the subject in the picture are not scored
    centre = ((cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h))[seen]
    whole = ((cx - bw / 2 >= x) & (cx + bw / 2 <= x + w) & (cy - bh / 2 >= y) & (cy + bh / 2 <= y + h))[seen]
    shot = plan["shot"].to_numpy()[:n]
    steps = np.hypot(np.diff(plan["cx"].to_numpy()[:n]), np.diff(plan["cy"].to_numpy()[:n]))[shot[1:] == shot[:-1]]
    frame_h = float(plan["h"][0])  # a 9:16 window on 16:9 footage is the frame's full height
    return {
        "centre_inside": float(centre.mean()),
        "box_inside": float(whole.mean()),
        "motion_px_1080": float(steps.mean() * 1080 / frame_h) if len(steps) else 0.0,
    }
