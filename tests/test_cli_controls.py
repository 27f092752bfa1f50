"""`autoedit edit`'s controls (issue 15): each flag measured on the file it writes, each mistake a
person makes refused in one line before any work, and the loudness warnings.

Sources are tiny (160x90, 1-4 s, lavfi tones) and renders use `--preset ultrafast`, so a whole
render costs about a second.
"""

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from autoedit_dagster.cli import _edit_settings, build_parser, main
from autoedit_dagster.engine import ffmpeg_io
from autoedit_dagster.engine.config import SilenceSettings
from testsupport.media_factory import ffmpeg

# Loud tone, quiet tone (30 dB under), loud, quiet: 1 s each. The quiet seconds are the noise
# floor, so the loudness detector keeps the loud ones; 40 dB above the floor is nothing at all.
STEPS = "sine=f=440:r=48000:d=4,volume='if(lt(mod(t,2),1),0.3,0.01)':eval=frame"
# 0.5 ms clicks at nearly full scale every 100 ms: quiet on average, peaks at the ceiling already,
# so no gain to -14 LUFS can pass the true-peak limit.
CLICKS = "aevalsrc='if(lt(mod(t,0.1),0.0005),0.9,0)':s=48000:d=2"


def _source(path: Path, audio: str | None, seconds: float, size: str = "160x90") -> Path:
    audio_in = ["-f", "lavfi", "-i", audio] if audio else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}", *audio_in, "-map", "0:v",
           *(["-map", "1:a", "-c:a", "aac", "-b:a", "192k"] if audio else []),
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-t", str(seconds), str(path))  # fmt: skip
    return path


def _edit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    code = main(["edit", *argv, "--preset", "ultrafast"] if "--preset" not in argv else ["edit", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def _streams(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    return {"format": data["format"], "video": video}


def _duration(path: Path) -> float:
    return float(_streams(path)["format"]["duration"])


def _lufs(path: Path) -> float:
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vn", "-af", "ebur128=framelog=verbose",
         "-f", "null", "-"], capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", log)[-1])


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _source(tmp_path_factory.mktemp("steps") / "steps.mp4", STEPS, 4)


# ------------------------------------------------------------------------------------------- the cut


def test_cut_flags_change_what_is_kept(steps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept: dict[str, float] = {}
    said: dict[str, str] = {}
    runs = {
        "loudness": ["--cut-on", "loudness"],
        "wide margin": ["--cut-on", "loudness", "--margin", "0.3"],
        "after only": ["--cut-on", "loudness", "--margin", "0,0.5"],
        "no margin": ["--margin", "0", "--threshold", "12"],  # --threshold alone cuts on loudness
        "long silences only": ["--cut-on", "loudness", "--min-silence", "2"],
        "high threshold": ["--threshold", "40"],
    }
    for name, flags in runs.items():
        out = tmp_path / f"{name}.mp4"
        said[name], _ = _edit(capsys, str(steps), "-o", str(out), "--profile", "yoko", *flags)
        kept[name] = _duration(out)
    # Two loud seconds and their margins: 2 s + 0.2 s before the second and after each (the first
    # starts the file); margins of 0.3 s keep 0.3 s more, 0.5 s after and none before 3 s in all,
    # none 2 s. (0.4 s margins would leave a gap of 0.2 s, under --min-silence's 0.3: not cut.)
    assert kept["loudness"] == pytest.approx(2.6, abs=0.1)
    assert kept["wide margin"] == pytest.approx(kept["loudness"] + 0.3, abs=0.1)
    assert kept["after only"] == pytest.approx(3.0, abs=0.1)
    assert kept["no margin"] == pytest.approx(2.0, abs=0.1)
    assert "cut on loudness" in said["no margin"]
    # The quiet seconds, less their margins, are shorter than 2 s: nothing is cut.
    assert kept["long silences only"] == pytest.approx(4.0, abs=0.05)
    assert kept["high threshold"] == pytest.approx(4.0, abs=0.05)
    assert "nothing louder than the noise floor" in said["high threshold"]


# ---------------------------------------------------------------------------------------- the output


def test_size_rate_quality_speed_and_container(steps: Path, tmp_path: Path, capsys) -> None:
    """--height/--resolution, --fps, --crf, --preset and the container, measured on the files."""
    small = tmp_path / "small.mkv"
    said, _ = _edit(capsys, str(steps), "-o", str(small), "--no-cut", "--height", "320", "--fps", "10", "--crf", "40")
    assert "cutting is off: every frame kept" in said and "cut on" not in said
    fine = tmp_path / "fine.mov"
    _edit(capsys, str(steps), "-o", str(fine), "--no-cut", "--resolution", "180x320", "--fps", "10", "--crf", "10",
          "--preset", "medium")  # fmt: skip
    probed = {path.suffix: _streams(path) for path in (small, fine)}
    for found in probed.values():
        video = found["video"]
        assert (video["width"], video["height"]) == (180, 320)  # 9:16 of tate, at the height asked for
        assert video["r_frame_rate"] == "10/1" and int(video["nb_read_packets"]) == 40  # 4 s at 10 fps
        assert float(found["format"]["duration"]) == pytest.approx(4.0, abs=0.1)  # --no-cut: all of it
    assert probed[".mkv"]["format"]["format_name"].startswith("matroska")
    assert probed[".mov"]["format"]["format_name"].startswith("mov") and small.read_bytes()[4:8] != b"ftyp"
    assert fine.read_bytes()[4:12] == b"ftypqt  "  # QuickTime's brand, not MP4's
    # x264 writes its settings into the stream: the quality and speed asked for are the ones used.
    small_bytes, fine_bytes = small.read_bytes(), fine.read_bytes()
    assert b"crf=40.0" in small_bytes and b"subme=0" in small_bytes  # ultrafast: no subpixel refinement
    assert b"crf=10.0" in fine_bytes and b"subme=7" in fine_bytes  # medium
    assert fine.stat().st_size > 2 * small.stat().st_size


def test_a_small_source_is_enlarged_with_a_warning_or_kept_with_no_upscale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = _source(tmp_path / "tiny.mp4", "sine=f=300:d=2", 2)
    enlarged = tmp_path / "enlarged.mp4"
    _, warned = _edit(capsys, str(tiny), "-o", str(enlarged), "--no-cut", "--height", "360")
    assert (_streams(enlarged)["video"]["width"], _streams(enlarged)["video"]["height"]) == (202, 360)
    assert "autoedit: warning: the 160x90 source is enlarged 4.0x to 202x360" in warned
    assert "--no-upscale" in warned and warned.count("\n") == 1
    kept = tmp_path / "kept.mp4"
    _, quiet = _edit(capsys, str(tiny), "-o", str(kept), "--no-cut", "--height", "360", "--no-upscale")
    # The largest even 9:16 window of 160x90, shown at its own size; no warning.
    assert (_streams(kept)["video"]["width"], _streams(kept)["video"]["height"]) == (50, 90)
    assert "warning" not in quiet
    yoko = tmp_path / "yoko.mp4"
    _edit(capsys, str(tiny), "-o", str(yoko), "--no-cut", "--profile", "yoko", "--resolution", "320x180")
    assert (_streams(yoko)["video"]["width"], _streams(yoko)["video"]["height"]) == (320, 180)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"autoedit {version('autoedit_dagster')}\n"


# -------------------------------------------------------------------------------------- loudness


def test_a_one_second_edit_is_on_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The two-pass loudnorm missed short outputs (a 2.7 s edit at -34.8 LUFS); a measured gain lands 1 s."""
    short = _source(tmp_path / "short.mp4", "sine=f=500:r=48000:d=1,volume=-38dB", 1)
    out = tmp_path / "out.mp4"
    _, err = _edit(capsys, str(short), "-o", str(out), "--no-cut", "--profile", "yoko")
    assert _duration(out) == pytest.approx(1.0, abs=0.05)
    assert _lufs(out) == pytest.approx(-14.0, abs=1.0)
    assert "warning" not in err


def test_a_target_that_cannot_be_met_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clicks = _source(tmp_path / "clicks.mp4", CLICKS, 2)
    out = tmp_path / "clicks out.mp4"
    _, err = _edit(capsys, str(clicks), "-o", str(out), "--no-cut", "--profile", "yoko")
    lufs = _lufs(out)
    assert lufs < -15.0  # the limiter held it down
    assert f"autoedit: warning: loudness {lufs:.1f} LUFS, not the -14 LUFS target: the true-peak limit" in err
    silent = _source(tmp_path / "silent.mp4", "anullsrc=r=48000:cl=stereo", 2)
    _, err = _edit(capsys, str(silent), "-o", str(tmp_path / "silent out.mp4"), "--no-cut", "--profile", "yoko")
    assert "autoedit: warning: the kept audio is silent or too short to measure" in err


# ------------------------------------------------------------------------------- mistakes, refused


@pytest.fixture
def no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any decode or render would fail as an internal error (exit 1): a refusal must come first."""
    monkeypatch.setattr(ffmpeg_io, "FFMPEG", "/nonexistent/ffmpeg-must-not-run")


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        code = main(["edit", *argv])
    except SystemExit as exited:  # argparse's own refusals
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.mark.usefixtures("no_ffmpeg")
def test_paths_a_person_gets_wrong(steps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(steps)
    folder = tmp_path / "renders"
    folder.mkdir()
    assert "is a folder; name the video" in _refused(capsys, src, "-o", str(folder))
    assert "is a folder; name the video" in _refused(capsys, src, "-o", f"{tmp_path / 'new'}/")
    assert ".avi is not a video container" in _refused(capsys, src, "-o", str(tmp_path / "out.avi"))
    assert "no extension is not a video container" in _refused(capsys, src, "-o", str(tmp_path / "out"))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert f"{a_file} is a file, not a folder" in _refused(capsys, src, "-o", str(a_file / "out.mp4"))
    a_file.unlink()
    missing = tmp_path / "nowhere" / "timeline.png"
    err = _refused(capsys, src, "-o", str(tmp_path / "out.mp4"), "--timeline-png", str(missing))
    assert f"folder {missing.parent} does not exist" in err
    err = _refused(capsys, src, "-o", str(tmp_path / "out.mp4"), "--timeline-png", str(tmp_path / "t.jpg"))
    assert "end the name with .png" in err
    # An input that is a folder is said to be one, not "no such file".
    err = _refused(capsys, str(folder), "-o", str(tmp_path / "out.mp4"))
    assert "is a folder, not a video file" in err and "no such file" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renders"] and not any(folder.iterdir())


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--margin", "x"], "argument --margin: expected SECONDS or BEFORE,AFTER"),
        (["--margin=-1"], "--margin -1.0: input should be greater than or equal to 0"),
        (["--margin", "0.1,0.2,0.3"], "argument --margin: expected SECONDS or BEFORE,AFTER"),
        (["--threshold", "loud"], "argument --threshold: invalid float value"),
        (["--threshold", "12", "--cut-on", "voice"], "--threshold is the loudness detector's level"),
        (["--min-silence", "100"], "--min-silence 100.0: input should be less than or equal to 60"),
        (["--no-cut", "--margin", "0.1"], "--no-cut keeps every frame: --margin would do nothing"),
        (["--cut-on", "pitch"], "argument --cut-on: invalid choice"),
        (["--no-cut", "--cut-background-voices"], "--no-cut keeps every frame: --cut-background-voices would"),
        (["--cut-on", "loudness", "--cut-background-voices"], "--cut-background-voices is the voice detector's"),
        (["--resolution", "720"], "argument --resolution: expected WIDTHxHEIGHT"),
        (["--resolution", "8x8"], "--resolution 8x8: input should be greater than or equal to 16"),
        (["--resolution", "720x720"], "720x720 is not the tate profile's aspect (9:16)"),
        (["--profile", "yoko", "--resolution", "320x320"], "320x320 is not the source's shape (160x90)"),
        (["--height", "1080", "--resolution", "608x1080"], "not allowed with argument"),
        (["--height", "20000"], "--height 20000: input should be less than or equal to 7680"),
        (["--fps", "0"], "--fps 0.0: input should be greater than 0"),
        (["--crf", "52"], "--crf 52: input should be less than or equal to 51"),
        (["--crf", "high"], "argument --crf: invalid int value"),
        (["--preset", "quick"], "argument --preset: invalid choice"),
        (["--export", "pdf"], "unknown export pdf"),
    ],
)
@pytest.mark.usefixtures("no_ffmpeg")
def test_bad_values_are_refused_before_any_work(
    steps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str
) -> None:
    out = tmp_path / "out.mp4"
    err = _refused(capsys, str(steps), "-o", str(out), "--timeline-png", str(tmp_path / "t.png"), *flags)
    assert said in err
    assert list(tmp_path.iterdir()) == []


def test_cut_background_voices_sets_the_voice_detectors_rule() -> None:
    """`--cut-background-voices` turns the background-voice cut on; left out, it is off (the default)."""
    parser = build_parser(remote=False)
    flagged = _edit_settings(parser.parse_args(["edit", "in.mp4", "-o", "out.mp4", "--cut-background-voices"]))
    assert flagged.silence.cut_background_voice is True
    default = _edit_settings(parser.parse_args(["edit", "in.mp4", "-o", "out.mp4"]))
    assert default.silence.cut_background_voice is SilenceSettings().cut_background_voice is False
