"""analyze(): one decode pass to a per-frame table."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from autoedit_dagster.engine import analysis
from autoedit_dagster.engine.analysis import ANALYSIS_SCHEMA, analyze
from autoedit_dagster.engine.config import AnalysisSettings
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.subjects import SubjectTracker
from testsupport.media_factory import moving_subject_clip, shots_clip, talk_clip
from testsupport.people_factory import CASES, person_clip


def test_one_row_per_frame_with_schema(bunny: Path) -> None:
    table = analyze(probe(bunny))
    assert table.height == 132
    assert dict(table.schema) == ANALYSIS_SCHEMA
    assert table["frame"].to_list() == list(range(132))
    assert table["time"][25] == pytest.approx(1.0)
    assert table["audio_db"].null_count() == 0


def test_without_subjects_the_subject_columns_stay_empty_and_the_rest_is_the_same(
    carphone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit that keeps the whole frame (yoko) searches no subject: nothing else in the table moves."""
    info = probe(carphone)
    full = analyze(info)
    located: list[int] = []
    monkeypatch.setattr(SubjectTracker, "locate", lambda *_a, **_k: located.append(1))
    bare = analyze(info, AnalysisSettings(subjects=False))
    assert located == []
    subject_columns = [c for c in ANALYSIS_SCHEMA if c.startswith("subject_")]
    assert full["subject_kind"].drop_nulls().len() > 0  # the man in the car is found when asked for
    assert all(bare[c].null_count() == bare.height for c in subject_columns)
    assert bare.drop(subject_columns).equals(full.drop(subject_columns))
    # Nor does ffmpeg make the face-search picture nobody would read.
    assert "select=" not in " ".join(analysis._command(info, AnalysisSettings(subjects=False), None, None, 6))


def test_scene_score_peaks_exactly_at_cuts(tmp_path: Path) -> None:
    cuts = shots_clip(tmp_path / "shots.mp4", [30, 40, 25, 50])
    table = analyze(probe(tmp_path / "shots.mp4"))
    top = table.sort("scene_score", descending=True)["frame"][:3].sort().to_list()
    assert top == cuts


def test_audio_levels_follow_speech(tmp_path: Path) -> None:
    clip = talk_clip(tmp_path / "talk.mp4", ["one two three four", "five six seven"], [1.5])
    table = analyze(probe(clip.path))
    (s0, e0), (s1, _e1) = clip.speech
    speech = table.filter(pl.col("time").is_between(s0 + 0.1, e0 - 0.1))["audio_db"]
    pause = table.filter(pl.col("time").is_between(e0 + 0.2, s1 - 0.2))["audio_db"]
    assert speech.median() > pause.median() + 20


def test_subject_follows_moving_disc(tmp_path: Path) -> None:
    truth = moving_subject_clip(tmp_path / "move.mp4", seconds=3)
    table = analyze(probe(tmp_path / "move.mp4"), AnalysisSettings(subject_fps=5))
    sampled = table.filter(pl.col("subject_cx").is_not_null())
    assert sampled.height >= 14
    errors = [abs(row["subject_cx"] - truth[row["frame"]][0]) for row in sampled.iter_rows(named=True)]
    assert sorted(errors)[len(errors) // 2] < 15  # median error in pixels on a 640-wide frame


def test_face_found_in_real_clip(carphone: Path) -> None:
    table = analyze(probe(carphone))
    kinds = table["subject_kind"].drop_nulls().to_list()
    assert kinds.count("face") >= len(kinds) // 2
    faces = table.filter(pl.col("subject_kind") == "face")
    assert 40 < faces["subject_cx"].median() < 140  # the man sits in the middle of the 176-px frame
    assert table["audio_db"].null_count() == table.height  # no audio stream


def test_memory_does_not_hold_frames(tmp_path: Path) -> None:
    """The decode pass keeps one previous frame, not the video."""
    clip = tmp_path / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=20", "-c:v", "libx264",
         "-preset", "ultrafast", str(clip)], check=True,
    )  # fmt: skip
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = analyze(probe(clip))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert table.height == 500
    assert grown_mb < 150


def test_luma_is_full_range(tmp_path: Path) -> None:
    """Video-range black and white (Y 16 and 235) read as 0 and 255, as the shot thresholds expect."""
    clip = tmp_path / "bw.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=320x240:r=25:d=1", "-f", "lavfi",
         "-i", "color=c=white:s=320x240:r=25:d=1", "-filter_complex", "[0][1]concat=n=2", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", str(clip)], check=True,
    )  # fmt: skip
    luma = analyze(probe(clip))["luma"].to_list()
    assert max(luma[:20]) < 2
    assert min(luma[-20:]) > 253


def _ffmpeg_children_nice(source: Path) -> list[int]:
    """Niceness of this process's ffmpeg children reading `source`, from /proc."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            reads_source = str(source).encode() in (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and reads_source:  # stat field 4: the parent's pid
            found.append(int(fields[16]))  # stat field 19: nice
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
@pytest.mark.parametrize("nice", [10, 0])
def test_python_side_yields_to_the_decode(bunny: Path, nice: int) -> None:
    """The per-frame work runs at `nice`; ffmpeg keeps the caller's priority."""
    caller = os.getpriority(os.PRIO_PROCESS, 0)
    readers: list[int] = []
    children: list[list[int]] = []

    def progress(_fraction: float) -> None:
        if not readers:
            readers.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def watch() -> None:  # ffmpeg may be done before the reader's first progress: it reads ahead
        deadline = time.monotonic() + 10
        while not children and time.monotonic() < deadline:
            if found := _ffmpeg_children_nice(bunny):
                children.append(found)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    analyze(probe(bunny), AnalysisSettings(nice=nice), progress)
    watcher.join()
    assert readers[0] == min(19, caller + nice)
    assert children == [[caller]]  # the ffmpeg decoding the file
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # the caller's thread


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (8, 7)])
def test_the_decoder_leaves_a_core_to_the_python_work(
    bunny: Path, monkeypatch: pytest.MonkeyPatch, cores: int, threads: int
) -> None:
    """On two cores frame-threaded decoding only takes CPU the subject and voice work needs."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    command = analysis._command(probe(bunny), AnalysisSettings(), None, 3, 6)
    given = command.index("-threads")
    assert command[given + 1] == str(threads)
    assert given < command.index("-i")  # an option of the decoder, not of an output


def test_the_raw_frame_outputs_are_copied_on_ffmpegs_own_thread(bunny: Path) -> None:
    """The rawvideo encoder is frame-threaded by default; for a copy the hand-offs cost more (bench)."""
    command = analysis._command(probe(bunny), AnalysisSettings(), None, 3, 6)
    raw = [i for i, arg in enumerate(command) if arg == "rawvideo"]
    assert len(raw) == 2  # the small frames and the face planes
    assert all(command[i + 1 : i + 3] == ["-threads", "1"] for i in raw)


def test_a_failing_progress_callback_stops_the_pass(bunny: Path) -> None:
    def progress(_fraction: float) -> None:
        raise RuntimeError("cancelled by the caller")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="cancelled by the caller"):
        analyze(probe(bunny), on_progress=progress)
    assert time.monotonic() - started < 20
    assert _ffmpeg_children_nice(bunny) == []  # ffmpeg is gone


def test_an_interrupt_stops_the_pass_and_its_ffmpeg(tmp_path: Path) -> None:
    """Ctrl-C while the face search lags and ffmpeg is mid-file: KeyboardInterrupt soon, no ffmpeg left.

    Run in a child with a timeout, so a pass that hangs fails the test instead of the suite.
    """
    clip = tmp_path / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=60", "-c:v", "libx264",
         "-preset", "ultrafast", str(clip)], check=True,
    )  # fmt: skip
    script = (
        "import signal, subprocess, sys, time\n"
        "from autoedit_dagster.engine.analysis import analyze\n"
        "from autoedit_dagster.engine.media_info import probe\n"
        "from autoedit_dagster.engine.subjects import SubjectTracker\n"
        "locate = SubjectTracker.locate\n"
        "SubjectTracker.locate = lambda self, *a, **k: (time.sleep(0.2), locate(self, *a, **k))[1]\n"
        "info = probe(sys.argv[1])\n"
        "signal.signal(signal.SIGALRM, signal.default_int_handler)\n"
        "signal.setitimer(signal.ITIMER_REAL, 2.0)\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    analyze(info)\n"
        "    print(f'finished {time.monotonic() - started:.1f}')\n"
        "except KeyboardInterrupt:\n"
        "    print(f'interrupted {time.monotonic() - started:.1f}')\n"
        "left = subprocess.run(['pgrep', '-P', str(__import__('os').getpid()), 'ffmpeg'], capture_output=True)\n"
        "print('ffmpeg left' if left.stdout.strip() else 'no ffmpeg left')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(clip)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    outcome, seconds, *_ = done.stdout.split()
    assert outcome == "interrupted" and float(seconds) < 10  # not after 120 slow searches
    assert done.stdout.strip().endswith("no ffmpeg left")


def test_the_decode_never_waits_on_a_slow_subject_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg decodes on while the niced face search lags: it ends seconds before the search does.

    With the readers reading the pipes themselves, ffmpeg stopped on its write of the next face
    plane (a pipe holds one and a half) until the search caught up, and the decode with it.
    """
    clip = tmp_path / "slow.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=6", "-c:v", "libx264",
         "-preset", "ultrafast", str(clip)], check=True,
    )  # fmt: skip
    locate = SubjectTracker.locate

    def slow_locate(self: SubjectTracker, *args: object, **kwargs: object) -> object:
        time.sleep(0.3)  # 13 samples: 3.9 s of searching
        return locate(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SubjectTracker, "locate", slow_locate)
    ended: list[float] = []

    def watch() -> None:
        while not _ffmpeg_children_nice(clip):
            time.sleep(0.01)
        while _ffmpeg_children_nice(clip):
            time.sleep(0.02)
        ended.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    table = analyze(probe(clip))
    returned = time.monotonic()
    watcher.join(timeout=5)
    assert table["subject_kind"].drop_nulls().len() == 13  # frames 0, 12, ..., 144
    assert returned - ended[0] > 2.0  # the decode was done long before the search


def test_small_faces_are_in_the_table_in_source_pixels(tmp_path: Path) -> None:
    """Faces under a seventh of the 256-px analysis frame are looked for (issue 12): a face 1/15 of a
    720p frame (48 px) is found on the face plane decoded beside the small frame, and its box lands
    in the table in source pixels on every sample."""
    clip = person_clip(tmp_path / "small_face.mp4", CASES["face 1/15"], (1280, 720), seconds=3.0)
    table = analyze(probe(clip.path))
    sampled = table.filter(pl.col("subject_kind").is_not_null())
    assert sampled.height == 7 and set(sampled["subject_kind"]) <= {"face", "held"}
    assert (sampled["subject_kind"] == "face").sum() >= 6
    for row in sampled.iter_rows(named=True):
        cx, cy, w, h = clip.boxes[row["frame"]]
        assert abs(row["subject_cx"] - cx) < w / 2 and abs(row["subject_cy"] - cy) < h / 2
        assert 0.6 < row["subject_h"] / h < 1.6
