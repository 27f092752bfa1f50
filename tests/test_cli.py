"""The `autoedit` command: its interface, exit codes and what each kind of input gets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoedit_dagster.cli import main
from autoedit_dagster.engine.config import PROFILES
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.names import PROFILE_NAMES, REFRAMED_PROFILES
from testsupport.media_factory import ffmpeg, shots_clip, talk_clip


def _clip(path: Path, *, size: str = "320x180", seconds: float = 2, audio: bool = True, rate: int = 25) -> Path:
    audio_in = ["-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}"] if audio else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}", *audio_in, "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", *(["-c:a", "aac"] if audio else []), str(path))  # fmt: skip
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory):
    return talk_clip(
        tmp_path_factory.mktemp("talk") / "talk.mp4",
        ["this is the first sentence", "and here is the second one", "the end"], [2.0, 1.0],
        size="480x270",
    )  # fmt: skip


def test_analyze_json_interface(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "shots.mp4"
    cuts = shots_clip(clip, [30, 40, 30])
    code, out, _ = _run(capsys, "analyze", str(clip), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["duration"] == pytest.approx(4.0) and data["fps"] == 25
    assert [s["frame"] for s in data["shots"] if s["kind"] == "cut"] == cuts
    assert data["shots"][0]["time"] == pytest.approx(cuts[0] / 25)
    assert data["speech"] and all(len(r) == 2 for r in data["speech"])
    assert len(data["crop_path"]) == 100
    window = data["crop_path"][0]
    assert (window["w"], window["h"]) == (202, 360)  # 9:16 inside 640x360, even sizes
    assert all(0 <= w["x"] <= 640 - w["w"] for w in data["crop_path"])


def test_edit_tate_with_exports(talk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out dir" / "edit.mp4"
    out.parent.mkdir()
    png = tmp_path / "timeline.png"
    code, stdout, err = _run(
        capsys, "edit", str(talk.path), "-o", str(out), "--export", "fcpxml,fcp7,edl,otio,json",
        "--timeline-png", str(png),
    )  # fmt: skip
    assert code == 0, err
    info = probe(out)
    assert (info.width, info.height) == (1080, 1920)
    assert info.duration < talk.duration - 1.5  # the 2 s and 1 s pauses lost most of their length
    for suffix in (".fcpxml", ".fcp7.xml", ".edl", ".otio.json", ".timeline.json"):
        assert (out.parent / f"edit{suffix}").stat().st_size > 0
    assert png.stat().st_size > 0
    assert "edit.mp4" in stdout
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_edit_yoko_keeps_source_size(talk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "yoko.mp4"
    code, _, err = _run(capsys, "edit", str(talk.path), "-o", str(out), "--profile", "yoko")
    assert code == 0, err
    assert (probe(out).width, probe(out).height) == (480, 270)


def test_cut_on_chooses_the_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Beeps with silence between them: no voice, so `voice` keeps it all; `loudness` cuts the gaps."""
    beeps = tmp_path / "beeps.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=6", "-f", "lavfi", "-i",
           "sine=frequency=1000:duration=6,volume=volume=0.01:enable='gte(mod(t,2),0.5)'",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(beeps))  # fmt: skip
    kept, said = {}, {}
    for detector in ("voice", "loudness"):
        out = tmp_path / f"{detector}.mp4"
        code, said[detector], err = _run(
            capsys, "edit", str(beeps), "-o", str(out), "--profile", "yoko", "--cut-on", detector
        )
        assert code == 0, err
        assert f"cut on {detector}:" in said[detector]
        kept[detector] = probe(out).duration
    assert "cut on voice: 0.00 s of speech found" in said["voice"] and "no speech found: nothing cut" in said["voice"]
    assert kept["voice"] > 5.8 > 4.0 > kept["loudness"]
    with pytest.raises(SystemExit) as refused:
        main(["edit", str(beeps), "-o", str(tmp_path / "x.mp4"), "--cut-on", "pitch"])
    assert refused.value.code == 2 and "--cut-on" in capsys.readouterr().err


def _assert_refused(capsys, tmp_path: Path, src: Path, pattern: str) -> None:
    out = tmp_path / "refused.mp4"
    code, _, err = _run(capsys, "edit", str(src), "-o", str(out))
    assert code == 2
    assert err.count("\n") == 1 and pattern in err and "Traceback" not in err
    assert not out.exists()


def test_engine_commands_do_not_load_dagster(talk, tmp_path: Path) -> None:
    """An edit holds its Python process beside ffmpeg for the whole render: no Dagster in it."""
    code = (
        "import sys; from autoedit_dagster.cli import main\n"
        f"assert main(['probe', {str(talk.path)!r}]) == 0\n"
        "assert 'dagster' not in sys.modules and 'dagster_graphql' not in sys.modules, 'loaded Dagster'\n"
        "assert main(['submit', '--help']) == 0\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "loaded Dagster" not in run.stderr
    assert run.returncode == 0, run.stderr
    assert "usage: autoedit submit" in run.stdout  # the remote commands are still there when named


def test_an_edit_loads_no_dagster_and_probes_its_source_once(talk, tmp_path: Path) -> None:
    """The whole `autoedit edit`: no Dagster, gateway or GraphQL client; one ffprobe of the source."""
    calls = tmp_path / "ffprobe.log"
    logging_ffprobe = tmp_path / "ffprobe"
    logging_ffprobe.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec ffprobe "$@"\n')
    logging_ffprobe.chmod(0o755)
    out = tmp_path / "out.mp4"
    code = (
        "import sys; from autoedit_dagster.cli import main\n"
        f"assert main(['edit', {str(talk.path)!r}, '-o', {str(out)!r}, '--profile', 'yoko']) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'dagster_graphql', 'gql', 'starlette'}),"
        " sorted(m for m in sys.modules if m.startswith(('autoedit_dagster.gateway', 'autoedit_dagster.remote'))))\n"
    )
    env = {**os.environ, "AUTOEDIT_FFPROBE": str(logging_ffprobe)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[] []"
    probed = [line for line in calls.read_text().splitlines() if str(talk.path) in line]
    assert len(probed) == 1, probed


def test_the_parser_knows_the_engines_profiles() -> None:
    assert tuple(PROFILES) == PROFILE_NAMES
    assert tuple(name for name, profile in PROFILES.items() if profile.aspect) == REFRAMED_PROFILES


def test_zero_byte_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    _assert_refused(capsys, tmp_path, tmp_path / "empty.mp4", "empty file")


def test_truncated_mp4(tmp_path: Path, capsys) -> None:
    whole = _clip(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _assert_refused(capsys, tmp_path, cut, "truncated")


def test_text_file_named_mp4(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.mp4").write_text("meeting notes\n" * 50)
    _assert_refused(capsys, tmp_path, tmp_path / "notes.mp4", "not a media file")


def test_audio_only_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "podcast.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", str(src))
    _assert_refused(capsys, tmp_path, src, "no video stream")


@pytest.mark.parametrize(
    "payload",
    [
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{secret}\n#EXT-X-ENDLIST\n",
        "ffconcat version 1.0\nfile '{secret}'\n",
        "#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/stolen.ts\n#EXT-X-ENDLIST\n",
    ],
    ids=["hls-local-file", "concat-script", "hls-network"],
)
def test_crafted_file_is_refused(tmp_path: Path, capsys, payload: str) -> None:
    secret = _clip(tmp_path / "secret.mp4")
    evil = tmp_path / "evil.mp4"
    evil.write_text(payload.format(secret=secret))
    out = tmp_path / "refused.mp4"
    code, _, err = _run(capsys, "edit", str(evil), "-o", str(out), "--export", "json")
    assert code == 2 and "refused for safety" in err
    assert not out.exists() and not (tmp_path / "refused.timeline.json").exists()


def test_video_only_is_reframed_without_silence_cut(tmp_path: Path, capsys) -> None:
    src = _clip(tmp_path / "silent film.mp4", audio=False)
    out = tmp_path / "out.mp4"
    code, _, err = _run(capsys, "edit", str(src), "-o", str(out))
    assert code == 0, err
    info = probe(out)
    assert (info.width, info.height) == (1080, 1920) and not info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_rotated_phone_video_comes_out_upright(tmp_path: Path, capsys) -> None:
    stored = tmp_path / "stored.mp4"
    # Left half bright, right half dark in the stored (landscape) pixels.
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=320x180:r=25:d=1", "-vf", "drawbox=x=0:y=0:w=160:h=180:c=white:t=fill",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(stored))  # fmt: skip
    phone = tmp_path / "phone.mp4"
    ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(phone))
    out = tmp_path / "upright.mp4"
    code, _, err = _run(capsys, "edit", str(phone), "-o", str(out), "--profile", "yoko")
    assert code == 0, err
    info = probe(out)
    assert info.height > info.width  # portrait, as the phone showed it
    # The bright half is now the top or bottom half, as ffmpeg's own autorotation puts it.
    expected = _halves(phone)
    assert _halves(out) == expected and expected in ("top", "bottom")


def _halves(path: Path) -> str:
    import numpy as np

    raw = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(path), "-frames:v", "1", "-vf", "scale=40:72", "-f", "rawvideo",
         "-pix_fmt", "gray", "-"], capture_output=True, check=True,
    ).stdout  # fmt: skip
    frame = np.frombuffer(raw, np.uint8).reshape(72, 40)
    top, bottom, left, right = (
        frame[:36].mean(),
        frame[36:].mean(),
        frame[:, :20].mean(),
        frame[:, 20:].mean(),
    )
    return max({"top": top, "bottom": bottom, "left": left, "right": right}.items(), key=lambda kv: kv[1])[0]


def test_variable_frame_rate(tmp_path: Path, capsys) -> None:
    src = tmp_path / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=30:d=3", "-f", "lavfi", "-i", "sine=d=3",
           "-vf", "select='not(between(n,20,40))*1+not(mod(n,3))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src))  # fmt: skip
    out = tmp_path / "out.mp4"
    code, _, err = _run(capsys, "edit", str(src), "-o", str(out), "--profile", "yoko")
    assert code == 0, err
    info = probe(out)
    assert not info.variable_frame_rate
    assert info.duration == pytest.approx(probe(src).duration, abs=0.15)


def test_odd_dimensions(tmp_path: Path, capsys) -> None:
    src = tmp_path / "odd.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=853x479:r=25:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv444p", str(src))  # fmt: skip
    for profile, size in (("tate", (1080, 1920)), ("yoko", (852, 478))):
        out = tmp_path / f"{profile}.mp4"
        code, _, err = _run(capsys, "edit", str(src), "-o", str(out), "--profile", profile)
        assert code == 0, err
        assert (probe(out).width, probe(out).height) == size


@pytest.mark.parametrize("frames", [1, 3])
def test_one_frame_and_few_frame_videos(tmp_path: Path, capsys, frames: int) -> None:
    """A clip of 3 frames (fewer than a cut's neighbourhood) was an internal error in shot detection."""
    src = tmp_path / "few.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25", "-frames:v", str(frames), "-c:v", "libx264", str(src))
    out = tmp_path / "out.mp4"
    code, _, err = _run(capsys, "edit", str(src), "-o", str(out), "--export", "edl")
    assert code == 0, err
    assert probe(out).frame_count == frames


def test_hostile_file_names(tmp_path: Path) -> None:
    """Spaces, unicode, shell metacharacters and a leading dash reach ffmpeg as plain names."""
    name = "-my clip ünï $(touch PWNED); rm -rf x `id` 'q'.mp4"
    _clip(tmp_path / "plain.mp4").rename(tmp_path / name)
    out = tmp_path / "-out $(touch PWNED2).mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "autoedit_dagster.cli", "edit", "--profile", "square", "-o", str(out), "--", name],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (probe(out).width, probe(out).height) == (1080, 1080)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert (tmp_path / name).exists()


def test_output_name_that_looks_like_a_protocol_is_a_file(tmp_path: Path) -> None:
    """`-o pipe:1/out.mp4` is a file path: ffmpeg never writes the render to stdout (the pipe protocol)."""
    _clip(tmp_path / "in.mp4")
    proc = subprocess.run(
        [sys.executable, "-m", "autoedit_dagster.cli", "edit", "--profile", "yoko", "-o", "pipe:1/out.mp4", "in.mp4"],
        cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"ftyp" not in proc.stdout
    assert probe(tmp_path / "pipe:1" / "out.mp4").duration > 1


def test_input_is_never_modified_nor_overwritten(tmp_path: Path, capsys) -> None:
    src = _clip(tmp_path / "in.mp4")
    before = src.read_bytes()
    code, _, err = _run(capsys, "edit", str(src), "-o", str(src))
    assert code == 2 and "overwrite the input" in err
    assert src.read_bytes() == before


def test_probe_command(capsys, bunny: Path) -> None:
    code, out, _ = _run(capsys, "probe", str(bunny), "--json")
    assert code == 0 and json.loads(out)["width"] == 1280
    code, out, _ = _run(capsys, "probe", str(bunny))
    assert code == 0 and "1280x720" in out


def test_console_script_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_text("nope")
    proc = subprocess.run(["autoedit", "probe", str(tmp_path / "bad.mp4")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("autoedit: error:")
