"""The subject model on still frames: faces at any size, no cartoon faces, one person followed.

Frames are Big Buck Bunny pictures at 640x360 (the face-search plane of a 16:9 source) with the
real carphone face pasted at a known place and size (`testsupport.people_factory.face_at`).
"""

import numpy as np
import pytest

from autoedit_dagster.engine import subjects
from autoedit_dagster.engine.subjects import HOLD_SAMPLES, SubjectTracker, find_faces, find_people
from testsupport.people_factory import BUNNY, CASES, _decode, face_at, person_clip

W, H = 640, 360


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    if not BUNNY.exists():
        pytest.skip(f"sample media missing: {BUNNY}")
    return _decode(BUNNY, (W, H), 5)


def with_faces(background: np.ndarray, *faces: tuple[float, float, float]) -> tuple[np.ndarray, list[tuple]]:
    """`background` with a face pasted at each (cx, cy, height); returns the frame and the true boxes."""
    frame = background.copy()
    return frame, [face_at(frame, 10 * i, cx, cy, fh) for i, (cx, cy, fh) in enumerate(faces)]


def small_gray(frame: np.ndarray) -> np.ndarray:
    """The analysis frame (256 px wide, gray) of a plane, as `analyze` hands both to the tracker."""
    import cv2

    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (256, 144), interpolation=cv2.INTER_AREA)


def hits(found: list[subjects.Subject], box: tuple) -> bool:
    cx, cy, w, h = box
    return any(abs(f.cx - cx) < w / 2 and abs(f.cy - cy) < h / 2 and 0.5 < f.h / h < 2 for f in found)


@pytest.mark.parametrize("share", [1 / 6, 1 / 10, 1 / 15])
def test_a_face_is_found_at_any_size(film: np.ndarray, share: float) -> None:
    """Faces under a seventh of the analysis frame are found (issue 12)."""
    rng = np.random.default_rng(int(1 / share))
    found = 0
    for k in range(6):
        frame, [box] = with_faces(film[k * 4], (rng.uniform(60, 580), rng.uniform(80, 280), share * H))
        found += hits(find_faces(frame), box)
    assert found >= 5  # of 6 places over a busy cartoon background


def test_cartoon_faces_and_fur_are_not_faces(film: np.ndarray) -> None:
    """The CNN scores the bunny's face 0.5-0.8; without skin colour it is dropped."""
    false = sum(len(find_faces(f)) for f in film[::2])
    assert false <= 1, f"{false} faces on {len(film[::2])} cartoon frames"


def test_a_larger_face_elsewhere_never_replaces_the_followed_one(film: np.ndarray) -> None:
    tracker = SubjectTracker(search_every=2)
    frame, [box] = with_faces(film[0], (150, 180, H / 10))
    first = tracker.locate(small_gray(frame), None, plane=frame)
    assert first.kind == "face" and abs(first.cx * W / 256 - box[0]) < 8
    for k in range(1, 7):  # a face twice as large arrives on the other side and stays
        frame, [box, _] = with_faces(film[k], (150 + 6 * k, 180, H / 10), (480, 170, H / 5))
        located = tracker.locate(small_gray(frame), small_gray(film[k - 1]), plane=frame)
        assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 8


def _with_poster(background: np.ndarray, k: int, live: bool) -> tuple[np.ndarray, tuple, tuple | None]:
    """A frame of `background` with the same still picture of a face (a fifth of the height) on the
    right and, if `live`, carphone's face a tenth tall walking on the left (a new frame each sample)."""
    frame = background.copy()
    poster = face_at(frame, 0, 480, 170, H / 5)
    person = face_at(frame, 10 * k + 3, 150 + 6 * k, 180, H / 10) if live else None
    return frame, poster, person


def test_a_still_picture_of_a_face_gives_way_to_the_live_person(film: np.ndarray) -> None:
    """The larger face is chosen first; one sample later it has not changed at all (a poster), and the
    live face is followed instead, for good (issue 12's "face beside its poster")."""
    tracker = SubjectTracker(search_every=2)
    for k in range(6):
        frame, poster, person = _with_poster(film[k], k, live=True)
        located = tracker.locate(small_gray(frame), small_gray(film[k - 1]) if k else None, plane=frame)
        expected = poster if k == 0 else person
        assert expected is not None and located.kind == "face", (k, located)
        assert abs(located.cx * W / 256 - expected[0]) < 8, (k, located, expected)


def test_a_still_picture_alone_is_followed(film: np.ndarray) -> None:
    """A photo with no live face beside it is the subject: there is nothing better to frame."""
    tracker = SubjectTracker(search_every=2)
    for k in range(5):
        frame, poster, _ = _with_poster(film[k], k, live=False)
        located = tracker.locate(small_gray(frame), small_gray(film[k - 1]) if k else None, plane=frame)
        assert located.kind == "face" and abs(located.cx * W / 256 - poster[0]) < 8, (k, located)


def test_a_covered_face_is_held_then_found_again_and_a_cut_searches_afresh(film: np.ndarray) -> None:
    tracker = SubjectTracker(search_every=2)
    frame, [box] = with_faces(film[0], (400, 200, H / 10))
    assert tracker.locate(small_gray(frame), None, plane=frame).kind == "face"
    kinds = []
    for k in range(1, 5):  # covered for 4 samples: another, smaller face in view meanwhile
        frame, _ = with_faces(film[k], (100, 100, H / 15))
        located = tracker.locate(small_gray(frame), None, plane=frame)
        kinds.append(located.kind)
        assert abs(located.cx * W / 256 - box[0]) < 8  # held where it was, not moved to the other face
    assert kinds == ["held"] * 4
    frame, [back] = with_faces(film[5], (430, 205, H / 10))
    located = tracker.locate(small_gray(frame), None, plane=frame)
    assert located.kind == "face" and abs(located.cx * W / 256 - back[0]) < 8
    frame, [other] = with_faces(film[6], (100, 100, H / 15))
    located = tracker.locate(small_gray(frame), None, new_shot=True, plane=frame)
    assert located.kind == "face" and abs(located.cx * W / 256 - other[0]) < 8  # the new shot's person


def test_a_face_that_moves_faster_than_its_reach_is_followed_there(film: np.ndarray) -> None:
    """A brisk walk turning back crosses a third of the picture between two samples (bench "people,
    varied", face 1/10 cut #0: held where it was heading for half a second, the crop lost it)."""
    tracker = SubjectTracker(search_every=4)
    frame, _ = with_faces(film[0], (150, 200, H / 10))
    assert tracker.locate(small_gray(frame), None, plane=frame).kind == "face"
    frame, [box] = with_faces(film[1], (150 + 0.35 * W, 180, H / 10))
    located = tracker.locate(small_gray(frame), None, plane=frame)
    assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 8


def test_a_look_alike_where_the_face_was_heading_loses_to_the_face_just_beyond_reach(
    film: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bench "people, varied" (seeds 777), face 1/10 cut #3: the CNN also boxed a patch of cartoon
    (0.68) a few pixels from where the face was heading, as the face went a little beyond its reach;
    the nearest won and the crop followed the cartoon for two seconds."""
    tracker = SubjectTracker(search_every=4)
    frame, _ = with_faces(film[0], (300, 180, H / 10))
    first = tracker.locate(small_gray(frame), None, plane=frame)
    assert first.kind == "face"
    moved, [box] = with_faces(film[1], (300 + 100, 180, H / 10))
    side = first.h * W / 256
    look_alike = subjects.Subject(300 + 12, 175, side, side, "face", 0.68)
    cartoon = subjects.face_look(moved, look_alike)
    assert subjects.look_distance(cartoon, tracker._look) > subjects.LOOK_DISTANCE  # not a face's colours
    find = subjects.find_faces

    def with_look_alike(bgr: np.ndarray, *args, **kwargs) -> list[subjects.Subject]:
        return [*find(bgr, *args, **kwargs), look_alike]  # on the next sample only: patched after the first

    monkeypatch.setattr(subjects, "find_faces", with_look_alike)
    located = tracker.locate(small_gray(moved), None, plane=moved)
    assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 8


def test_two_alike_faces_far_from_the_followed_one_do_not_take_it_over(film: np.ndarray) -> None:
    tracker = SubjectTracker(search_every=4)
    frame, [box] = with_faces(film[0], (320, 200, H / 10))
    assert tracker.locate(small_gray(frame), None, plane=frame).kind == "face"
    frame, _ = with_faces(film[1], (80, 150, H / 10), (560, 150, H / 10))  # neither can be told for it
    located = tracker.locate(small_gray(frame), None, plane=frame)
    assert located.kind == "held" and abs(located.cx * W / 256 - box[0]) < 8


def _following_one_of_two(
    background: np.ndarray, followed: tuple[float, float], other: tuple[float, float]
) -> tuple[SubjectTracker, tuple]:
    """A tracker that has taken the more central of two faces a tenth of the height tall, and its box."""
    tracker = SubjectTracker(search_every=4)
    frame, [box, _] = with_faces(background, (*followed, H / 10), (*other, H / 10))
    first = tracker.locate(small_gray(frame), None, plane=frame)
    assert first.kind == "face" and abs(first.cx * W / 256 - box[0]) < 8
    return tracker, box


def test_in_a_two_shot_a_turn_to_profile_does_not_hand_the_crop_to_the_other_face(film: np.ndarray) -> None:
    """The followed person turns to the other one: the detector misses the profile, the other face
    is the only one of its size and has the same colours (here the very same face), but the
    followed person's place still looks like them: held, not moved across."""
    held = 0
    for k in range(4):
        tracker, box = _following_one_of_two(film[2 * k], (250 + 10 * k, 180), (500, 160 + 10 * k))
        turned = film[2 * k + 1].copy()
        face_at(turned, 1, box[0], box[1], H / 10, squeeze=0.45)
        face_at(turned, 10, 500, 160 + 10 * k, H / 10)
        located = tracker.locate(small_gray(turned), None, plane=turned)
        held += abs(located.cx * W / 256 - box[0]) < 8
    assert held == 4


def test_in_a_two_shot_a_covered_face_is_held_not_handed_to_the_other_person(film: np.ndarray) -> None:
    """The followed person is hidden by a board; the other one, of the same size and colours (the
    very same face), within the reach the followed face may move in: held where it was (bench
    "people, varied", two-shot, covered 1.5 s: the crop went to the other person at once)."""
    import cv2

    held = 0
    for k in range(4):
        tracker, box = _following_one_of_two(film[2 * k], (380 + 10 * k, 180), (530, 170 + 10 * k))
        for j in range(1, 4):  # covered for three samples (1.5 s)
            covered, [box, _] = with_faces(film[2 * k + j], (*box[:2], H / 10), (530, 170 + 10 * k, H / 10))
            bx, by, bw, bh = box
            cv2.rectangle(covered, (int(bx - 0.8 * bw), int(by - 0.7 * bh)), (int(bx + 0.8 * bw), int(by + 0.3 * bh)),
                          (70, 110, 150), -1)  # fmt: skip
            located = tracker.locate(small_gray(covered), None, plane=covered)
            held += located.kind == "held" and abs(located.cx * W / 256 - box[0]) < 8
    assert held == 12


def test_a_face_beside_the_chosen_box_is_not_taken_for_another_person(
    film: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bench "people, varied" (two-shot, turns 2 s, rng 4242 #1): the first search chose a larger box
    the CNN put 50 px beside the real face; the real face, in the chosen one's reach, must stay a
    candidate for it (not another person), so it is followed from the next sample on."""
    frame, [box] = with_faces(film[0], (300, 180, H / 10))
    spurious = subjects.Subject(box[0] + 50, box[1], 1.25 * box[3], 1.25 * box[3], "face", 0.9)
    search = subjects.search_faces

    searched: list[np.ndarray] = []

    def with_spurious(bgr: np.ndarray, *args, **kwargs) -> list[subjects.Subject]:
        searched.append(bgr)  # the first search is the first sample's
        return [spurious, *search(bgr, *args, **kwargs)] if len(searched) == 1 else search(bgr, *args, **kwargs)

    monkeypatch.setattr(subjects, "search_faces", with_spurious)
    tracker = SubjectTracker(search_every=4)
    first = tracker.locate(small_gray(frame), None, plane=frame)
    assert abs(first.cx * W / 256 - spurious.cx) < 2
    for k in range(1, 4):
        moved, [box] = with_faces(film[k], (300 - 4 * k, 180, H / 10))
        located = tracker.locate(small_gray(moved), None, plane=moved)
        assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 8


def test_a_face_looks_like_itself_and_not_like_cartoon_look_alikes(film: np.ndarray) -> None:
    """`face_look` on one face over other backgrounds, places and sizes, against the boxes the CNN
    proposes on the cartoon (without the skin test that usually drops them)."""
    looks = []
    for k, (cx, cy, share) in enumerate([(120, 100, 1 / 6), (500, 250, 1 / 10), (320, 180, 1 / 15)]):
        frame, [box] = with_faces(film[5 * k], (cx, cy, share * H))
        looks.append(subjects.face_look(frame, subjects.Subject(*box, "face")))
    assert max(subjects.look_distance(a, b) for a in looks for b in looks) < subjects.LOOK_DISTANCE
    alike = []
    for picture in film[::4]:
        for x, y, w, h in subjects.detect_faces_cnn(picture, 0.3)[1]:
            alike.append(subjects.face_look(picture, subjects.Subject(x + w / 2, y + h / 2, w, h, "face")))
    assert alike, "the cartoon has no look-alike faces to compare with"
    assert min(subjects.look_distance(a, b) for a in looks for b in alike) > subjects.LOOK_DISTANCE


def test_a_lost_subject_is_let_go_after_the_hold(film: np.ndarray) -> None:
    tracker = SubjectTracker(search_every=1)
    frame, _ = with_faces(film[0], (300, 200, H / 10))
    tracker.locate(small_gray(frame), None, plane=frame)
    kinds = [tracker.locate(small_gray(f), None, plane=f.copy()).kind for f in film[1 : HOLD_SAMPLES + 3]]
    assert kinds[:HOLD_SAMPLES] == ["held"] * HOLD_SAMPLES
    assert kinds[HOLD_SAMPLES] != "held"


def test_whole_picture_searches_are_a_fraction_of_samples(film: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between searches the followed face is looked for in a window only (cost: issue 12's 1.3x)."""
    searched: list[int] = []
    search = subjects.search_faces

    def counted(*args, **kwargs) -> list:
        searched.append(1)
        return search(*args, **kwargs)

    monkeypatch.setattr(subjects, "search_faces", counted)
    tracker = SubjectTracker(search_every=4)
    located = []
    for k in range(16):
        frame, [box] = with_faces(film[k], (200 + 10 * k, 190, H / 10))
        found = tracker.locate(small_gray(frame), None, plane=frame)
        located.append(abs(found.cx * W / 256 - box[0]) < 8)
    assert all(located)
    assert sum(searched) <= 1  # the first sample; the rest are windows around the face


def _proposals_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The half-size proposal pass sees nothing (as it does for a small face about one time in ten)."""
    detect = subjects.detect_faces_cnn

    def blind_when_small(bgr: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        if bgr.shape[1] == round(W * subjects.PROPOSAL_SHRINK):
            return np.zeros(0), np.zeros((0, 4))
        return detect(bgr, min_score)

    monkeypatch.setattr(subjects, "detect_faces_cnn", blind_when_small)


def test_after_a_fruitless_search_at_a_cut_the_next_sample_is_searched_too(
    film: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = SubjectTracker(search_every=8)
    _proposals_miss(monkeypatch)
    frame, [box] = with_faces(film[0], (320, 180, H / 15))
    assert tracker.locate(small_gray(frame), None, new_shot=True, plane=frame).kind == "saliency"
    monkeypatch.undo()
    frame, [box] = with_faces(film[1], (322, 180, H / 15))
    located = tracker.locate(small_gray(frame), None, plane=frame)
    assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 6
    # Gone from view: held, and the whole picture is searched again on every sample it is missing.
    assert tracker.locate(small_gray(film[2]), None, plane=film[2].copy()).kind == "held"
    assert tracker._since_search == 0


def test_across_a_jump_cut_the_followed_face_is_looked_for_where_it_was(
    film: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut to the same framing (a jump cut) keeps the person even when the proposals miss them."""
    tracker = SubjectTracker(search_every=8)
    frame, [box] = with_faces(film[0], (420, 200, H / 15))
    assert tracker.locate(small_gray(frame), None, plane=frame).kind == "face"
    _proposals_miss(monkeypatch)
    frame, [box] = with_faces(film[10], (426, 202, H / 15))
    located = tracker.locate(small_gray(frame), None, new_shot=True, plane=frame)
    assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 6
    assert subjects.search_faces(frame, subjects.ACQUIRE_SCORE) == []  # without the hint: nobody


def test_a_walker_seen_from_behind_is_a_person_and_cartoons_are_not(
    film: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The fallback before saliency: OpenCV's HOG people detector finds the drawn walker (no face)
    on some strides and nothing on the cartoon. Its low recall on this figure (about a quarter of
    frames) is why the walker is the reframing's weakest case (bench/RESULTS.md)."""
    clip = person_clip(tmp_path_factory.mktemp("walker") / "walker.mp4", CASES["walker 1/2"], (W, H), 6.0)
    frames = _decode(clip.path, (W, H), 25)[::3]
    found = sum(hits(find_people(f), tuple(b)) for f, b in zip(frames, clip.boxes[::3], strict=True))
    assert found >= 0.1 * len(frames)
    assert sum(len(find_people(f)) for f in film[::3]) == 0


def test_the_gil_free_detector_finds_what_the_wheels_binding_finds(film: np.ndarray) -> None:
    """`detect_faces_cnn` calls the wheel's library directly; it must agree with the wheel's own call."""
    frame, _ = with_faces(film[20], (200, 150, 36), (480, 220, 24))
    for picture in (frame, film[12], np.ascontiguousarray(frame[50:300, 100:500])):
        ours_scores, ours_boxes = subjects.detect_faces_cnn(picture, 0.5)
        theirs_scores, theirs_boxes, _ = subjects._yuface().detect(np.ascontiguousarray(picture), conf=0.5)
        assert ours_scores.tolist() == theirs_scores.astype(float).tolist()
        assert ours_boxes.tolist() == theirs_boxes.astype(float).tolist()
    assert len(subjects.detect_faces_cnn(frame, 0.5)[0]) >= 2


def test_the_face_search_lets_other_threads_run(film: np.ndarray) -> None:
    """The analysis's frame reader keeps reading while a face search runs (the GIL is released)."""
    import threading

    stop = threading.Event()
    searches = 0

    def search() -> None:
        nonlocal searches
        while not stop.is_set():
            subjects.detect_faces_cnn(film[20], 0.5)
            searches += 1

    worker = threading.Thread(target=search)
    worker.start()
    try:
        # While the searching thread is busy, this thread still runs Python: with the GIL held for
        # each ~50 ms search, it would get only the gaps between searches.
        import time

        deadline, turns = time.perf_counter() + 1.0, 0
        while time.perf_counter() < deadline:
            turns += 1
            time.sleep(0.001)
    finally:
        stop.set()
        worker.join()
    assert searches >= 2
    assert turns >= 200  # ~20 with the GIL held through each search


def test_across_a_cut_the_followed_face_still_there_is_kept_over_a_larger_one(
    film: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bench "people" (face 1/10 covered 2 s, 1080p): the footage behind the person cut, and the
    search after it chose a larger box the CNN put on the cartoon; the face itself, in its place with
    its look, was then "the other person" and the crop left it."""
    tracker = SubjectTracker(search_every=4)
    frame, _ = with_faces(film[0], (340, 180, H / 10))
    assert tracker.locate(small_gray(frame), None, plane=frame).kind == "face"
    cut, [box] = with_faces(film[20], (330, 182, H / 10))
    larger = subjects.Subject(430, 160, 2 * box[2], 2 * box[3], "face", 0.95)
    search = subjects.search_faces
    monkeypatch.setattr(subjects, "search_faces", lambda *args, **kwargs: [larger, *search(*args, **kwargs)])
    located = tracker.locate(small_gray(cut), None, new_shot=True, plane=cut)
    assert located.kind == "face" and abs(located.cx * W / 256 - box[0]) < 8
    # Without a face followed before it, the same picture is a new scene: the larger face is chosen.
    fresh = SubjectTracker(search_every=4).locate(small_gray(cut), None, new_shot=True, plane=cut)
    assert abs(fresh.cx * W / 256 - larger.cx) < 2
