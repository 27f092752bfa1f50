"""The final render: geometry, codecs, exact cuts, moving crop, A/V sync, loudness, atomic output.

Clips are generated per test session with known content: a frame-number barcode (10 black/white
bars, robust to compression and scaling), a horizontal luma ramp (so a crop's x shows up as
mean brightness), and audio whose bursts mark known frames.
"""

import itertools
import json
import math
import re
import subprocess
import sys
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from autoedit_dagster.engine import render as render_mod
from autoedit_dagster.engine.config import PROFILES, EditProfile
from autoedit_dagster.engine.errors import CorruptMedia, MediaError
from autoedit_dagster.engine.render import (
    LoudnessMeasurement,
    crop_commands,
    crop_positions,
    filter_graph,
    measure_loudness,
    parse_ebur128_summary,
    render,
    render_command,
    sample_at,
)
from autoedit_dagster.engine.timeline import CropKey, FrameRange, Timeline

REPO = Path(__file__).resolve().parents[2]
BAR_BITS = 10
NTSC = Fraction(30000, 1001)


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], input=stdin, check=True)


def _fast(profile: EditProfile, **update: object) -> EditProfile:
    return profile.model_copy(update={"preset": "ultrafast", **update})


def _yuv_clip(path: Path, lumas: list[np.ndarray], fps: str, audio: Path | None = None) -> None:
    """Lossless H.264 from luma planes (grey chroma), so every source pixel value is known."""
    h, w = lumas[0].shape
    chroma = np.full((h // 2) * (w // 2) * 2, 128, dtype=np.uint8).tobytes()
    raw = b"".join(y.astype(np.uint8).tobytes() + chroma for y in lumas)
    audio_in = ["-i", str(audio)] if audio else []
    audio_out = ["-c:a", "pcm_s16le"] if audio else []
    ffmpeg("-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-r", fps, "-i", "pipe:0", *audio_in,
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", *audio_out, "-f", "mov", str(path),
           stdin=raw)  # fmt: skip


def _barcode(k: int, w: int = 320, h: int = 180) -> np.ndarray:
    bits = np.array([(k >> b) & 1 for b in range(BAR_BITS)], dtype=np.uint8)
    return np.repeat(16 + 219 * bits, w // BAR_BITS)[None, :].repeat(h, axis=0)


def _read_barcodes(lumas: np.ndarray) -> list[int]:
    w = lumas.shape[2]
    centres = (np.arange(BAR_BITS) * (w // BAR_BITS) + w // BAR_BITS // 2).astype(int)
    bits = lumas[:, :, centres].mean(axis=1) > 128
    return [int(sum(1 << b for b in range(BAR_BITS) if row[b])) for row in bits]


def _decode_luma(path: Path, w: int, h: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    size = w * h * 3 // 2
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
    return frames[:, : w * h].reshape(-1, h, w)


def _decode_audio(path: Path, rate: int = 48000) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype="<f4")


def _streams(path: Path) -> dict[str, dict]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def _integrated_lufs(path: Path) -> float:
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a", "-af", "ebur128",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", log)[-1])


def _top_level_atoms(path: Path) -> list[str]:
    atoms, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        atoms.append(kind)
        if size < 8:
            break
        pos += size
    return atoms


def _timeline(source: Path, fps: str, frames: int, w: int, h: int, audio: bool, **kw: object) -> Timeline:
    base: dict = dict(
        source=str(source), profile="test", fps=fps, frame_count=frames, source_width=w, source_height=h,
        has_audio=audio, output_width=w, output_height=h,
    )  # fmt: skip
    return Timeline(**(base | kw))


def _ranges(*pairs: tuple[int, int]) -> list[FrameRange]:
    return [FrameRange(start=s, end=e) for s, e in pairs]


# --- generated clips (session-wide: each is made once) ---------------------------------------------


@pytest.fixture(scope="session")
def talk(media_dir: Path) -> Path:
    """testsrc2 with a slowly swelling tone, -21 LUFS or so: needs +7 dB to reach -14.

    44.1 kHz mono AAC on purpose: with only `aresample` after loudnorm, ffmpeg 5.1 could not
    negotiate a channel layout for this input and every render of it failed.
    """
    path = media_dir / "render_talk.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=6",
           "-f", "lavfi", "-i", "aevalsrc=0.2*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*0.7*t)):s=44100:d=6",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    return path


BARS_FRAMES = 600
BURST_EVERY = 30


@pytest.fixture(scope="session")
def bars(media_dir: Path) -> Path:
    """600 frames at 30000/1001 fps, each showing its number as a barcode; a 1 kHz burst of one
    frame's length starts exactly at every 30th frame (PCM, so the audio truth is exact)."""
    path = media_dir / "render_bars.mov"
    wav = media_dir / "render_bars.wav"
    rate = 48000
    audio = np.zeros(sample_at(BARS_FRAMES, NTSC, rate), dtype=np.float32)
    for k in range(0, BARS_FRAMES, BURST_EVERY):
        start, end = sample_at(k, NTSC, rate), sample_at(k + 1, NTSC, rate)
        audio[start:end] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(end - start) / rate)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((audio * 32767).astype("<i2").tobytes())
    _yuv_clip(path, [_barcode(k) for k in range(BARS_FRAMES)], "30000/1001", audio=wav)
    wav.unlink()
    return path


RAMP_W = 640


def _ramp_level(x: np.ndarray) -> np.ndarray:
    return 16 + np.round(x * 219 / (RAMP_W - 1))


@pytest.fixture(scope="session")
def ramp(media_dir: Path) -> Path:
    """100 frames of a horizontal luma ramp (column x has level 16 + 219x/639), no audio."""
    path = media_dir / "render_ramp.mp4"
    plane = _ramp_level(np.arange(RAMP_W))[None, :].repeat(360, axis=0)
    _yuv_clip(path, [plane] * 100, "25")
    return path


# --- the tate deliverable ----------------------------------------------------------------------------


def test_tate_render_is_a_complete_deliverable(talk: Path, tmp_path: Path) -> None:
    """1080x1920 H.264 yuv420p + AAC, moov first, exact frame count, A/V lengths agree, -14 LUFS."""
    ranges = _ranges((0, 20), (30, 70), (100, 140))
    timeline = _timeline(
        talk, "25/1", 150, 640, 360, True, output_width=1080, output_height=1920, crop_width=202,
        crop_height=360, ranges=ranges, crop=[CropKey(frame=0, x=0, y=0), CropKey(frame=40, x=300, y=0)],
    )  # fmt: skip
    out = tmp_path / "renders" / "final.mp4"
    seen: list[float] = []
    result = render(timeline, out, _fast(PROFILES["tate"]), seen.append)

    assert result.output == out and out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["final.mp4"], "temporary files left behind"
    assert result.command[0].endswith("ffmpeg") and "-filter_complex" in result.command
    assert result.wall_seconds > 0
    streams = _streams(out)
    video, audio = streams["video"], streams["audio"]
    assert [video[k] for k in ("codec_name", "pix_fmt", "width", "height")] == ["h264", "yuv420p", 1080, 1920]
    assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")
    assert (audio["codec_name"], int(audio["sample_rate"])) == ("aac", 48000)
    atoms = _top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat"), f"not faststart: {atoms}"

    kept = sum(r.frames for r in ranges)
    assert int(video["nb_read_frames"]) == kept == 100
    frame = 1 / 25
    assert abs(float(video["duration"]) - kept * frame) < frame
    assert abs(result.output_duration - kept * frame) < frame
    assert abs(float(audio["duration"]) - float(video["duration"])) < frame

    assert result.loudness is not None and result.loudness.input_i < -18  # really needed a gain
    assert abs(_integrated_lufs(out) - -14.0) <= 1.0

    assert seen[-1] == 1.0 and len(seen) >= 3
    assert all(b > a for a, b in itertools.pairwise(seen)), "progress went backwards"


# --- moving crop -------------------------------------------------------------------------------------


def test_moving_crop_follows_keys_frame_exactly(ramp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each output frame's brightness is the ramp's mean under the crop window of its source frame.

    The crop script lives in a temporary folder whose name needs filter-graph escaping.
    """
    odd_tmp = tmp_path / "we:ird,tmp's [dir];x"
    odd_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(odd_tmp))
    keys = [CropKey(frame=0, x=0, y=0), CropKey(frame=30, x=201, y=0), CropKey(frame=61, x=900, y=0)]
    ranges = _ranges((5, 25), (28, 35), (58, 70))
    timeline = _timeline(
        ramp, "25", 100, 640, 360, False, output_width=180, output_height=320, crop_width=202,
        crop_height=360, ranges=ranges, crop=keys,
    )  # fmt: skip
    profile = _fast(PROFILES["tate"], width=180, height=320, crf=10)
    out = tmp_path / "crop.mp4"
    render(timeline, out, profile)

    lumas = _decode_luma(out, 180, 320)
    sources = [f for r in ranges for f in range(r.start, r.end)]
    assert len(lumas) == len(sources)
    # Odd x is rounded down to even, x past the edge is clamped: 201 -> 200, 900 -> 640 - 202 = 438.
    window = {0: 0, 30: 200, 61: 438}
    for luma, source in zip(lumas, sources, strict=True):
        x = window[max(k for k in window if k <= source)]
        expected = _ramp_level(np.arange(x, x + 202)).mean()
        assert abs(luma.mean() - expected) < 2.5, f"source frame {source}: crop not at x={x}"


def test_crop_gliding_every_frame_follows_its_path(ramp: Path, tmp_path: Path) -> None:
    """A window moving 2 px a frame, then 4, then still: sent as a few lines, followed on every frame."""
    path = {f: 2 * f if f < 40 else 80 + 4 * (f - 40) if f < 70 else 200 for f in range(90)}
    keys = [CropKey(frame=f, x=x, y=0) for f, x in path.items()]
    ranges = _ranges((0, 90))
    timeline = _timeline(
        ramp, "25", 100, 640, 360, False, output_width=180, output_height=320, crop_width=202,
        crop_height=360, ranges=ranges, crop=keys,
    )  # fmt: skip
    assert len(crop_commands(timeline).splitlines()) == 3  # 89 positions, three straight pieces
    out = tmp_path / "glide.mp4"
    render(timeline, out, _fast(PROFILES["tate"], width=180, height=320, crf=10))
    lumas = _decode_luma(out, 180, 320)
    assert len(lumas) == 90
    for frame, luma in enumerate(lumas):
        expected = _ramp_level(np.arange(path[frame], path[frame] + 202)).mean()
        assert abs(luma.mean() - expected) < 2.5, f"frame {frame}: crop not at x={path[frame]}"


# --- exact cuts, A/V sync, many ranges ---------------------------------------------------------------

MANY = _ranges(*[(3 * i, 3 * i + 2) for i in range(200)])  # 200 ranges of 2 frames, 1 frame cut between


def test_frame_accurate_cut_and_sync_with_200_ranges(bars: Path, tmp_path: Path) -> None:
    """Every output frame is the expected source frame, and each audio burst is under its frame."""
    timeline = _timeline(bars, "30000/1001", BARS_FRAMES, 320, 180, True, ranges=MANY)
    out = tmp_path / "cut.mp4"
    result = render(timeline, out, _fast(PROFILES["yoko"]))

    sources = [f for r in MANY for f in range(r.start, r.end)]
    assert _read_barcodes(_decode_luma(out, 320, 180)) == sources
    assert abs(result.output_duration - len(sources) / NTSC) < 1 / NTSC

    # Each burst must start where its source frame starts in the output (within 1 ms).
    samples = _decode_audio(out)
    loud = np.abs(samples) > 0.3 * np.abs(samples).max()
    onsets = [i for i in np.flatnonzero(loud) if not loud[max(0, i - 480) : i].any()]
    expected = [
        sample_at(j, NTSC, 48000) for j, k in enumerate(sources) if k % BURST_EVERY == 0
    ]  # cut points are frame starts, and every burst starts on a frame start
    assert len(onsets) == len(expected) == sum(1 for k in sources if k % BURST_EVERY == 0)
    assert max(abs(a - b) for a, b in zip(onsets, expected, strict=True)) <= 48


_PEAK_RSS = """
import resource, sys
from pathlib import Path
from autoedit_dagster.engine.config import PROFILES
from autoedit_dagster.engine.render import render
from autoedit_dagster.engine.timeline import Timeline
timeline = Timeline.model_validate_json(sys.argv[1])
render(timeline, Path(sys.argv[2]), PROFILES["yoko"].model_copy(update={"preset": "ultrafast"}))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kib(timeline: Timeline, out: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, timeline.model_dump_json(), str(out)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return int(proc.stdout.split()[-1])


def test_memory_stays_flat_with_many_ranges(bars: Path, tmp_path: Path) -> None:
    """Cutting into 200 ranges must not buffer frames: peak RSS is that of 2 ranges of the same length.

    (The same length because the audio filters' buffers fill over the first seconds whatever the cut.)
    """
    few = _timeline(bars, "30000/1001", BARS_FRAMES, 320, 180, True, ranges=_ranges((0, 200), (399, 599)))
    many = few.model_copy(update={"ranges": MANY})
    assert few.output_frames == many.output_frames
    baseline = _peak_rss_kib(few, tmp_path / "few.mp4")
    peak = _peak_rss_kib(many, tmp_path / "many.mp4")
    assert peak < baseline * 1.15 + 10_000, f"{peak} KiB with 200 ranges vs {baseline} KiB with 2"


# --- other inputs and failures -----------------------------------------------------------------------


def test_video_only_source_gets_no_audio_track(ramp: Path, tmp_path: Path) -> None:
    timeline = _timeline(ramp, "25", 100, 640, 360, False, ranges=_ranges((10, 40)))
    assert measure_loudness(timeline) is None
    out = tmp_path / "silent.mp4"
    result = render(timeline, out, _fast(PROFILES["yoko"]))
    streams = _streams(out)
    assert set(streams) == {"video"} and result.loudness is None
    assert int(streams["video"]["nb_read_frames"]) == 30
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)


def test_missing_source_leaves_nothing(talk: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(talk.read_bytes())
    timeline = _timeline(gone, "25/1", 150, 640, 360, True, ranges=_ranges((0, 50)))
    gone.unlink()
    out = tmp_path / "out" / "final.mp4"
    with pytest.raises(CorruptMedia):
        render(timeline, out, _fast(PROFILES["yoko"]))
    assert not out.exists()


def test_corrupt_source_leaves_nothing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    out = tmp_path / "final.mp4"
    timeline = _timeline(junk, "25/1", 150, 640, 360, False, ranges=_ranges((0, 50)))
    with pytest.raises(MediaError):
        render(timeline, out, _fast(PROFILES["yoko"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_interrupted_render_keeps_the_previous_output(talk: Path, tmp_path: Path) -> None:
    """A failure mid-encode removes the partial file and leaves an existing output as it was."""
    out = tmp_path / "final.mp4"
    out.write_bytes(b"previous render")
    timeline = _timeline(talk, "25/1", 150, 640, 360, True, ranges=_ranges((0, 150)))

    class Stopped(Exception):
        pass

    def stop(fraction: float) -> None:
        if fraction > render_mod.MEASURE_SHARE:
            raise Stopped("worker stopped mid-encode")

    with pytest.raises(Stopped):
        render(timeline, out, _fast(PROFILES["yoko"]), stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.mp4"]
    assert out.read_bytes() == b"previous render"


# --- the command itself (no ffmpeg run) --------------------------------------------------------------


# The output size of every timeline planned for the tate profile.
TATE_SIZE = {"output_width": 1080, "output_height": 1920}


def _ntsc_timeline(**kw: object) -> Timeline:
    return _timeline(Path("/media/in.mp4"), "30000/1001", 30_000, 1920, 1080, True, **kw)


def test_cut_points_are_exact_samples() -> None:
    """At 30000/1001 fps a frame is 1601.6 samples: cut points are computed, not accumulated."""
    assert sample_at(1000, NTSC, 48000) == 1_601_600  # exact, no drift after 1000 frames
    assert sample_at(5, NTSC, 48000) == 8008 and sample_at(1, NTSC, 48000) == 1602  # ceil(1601.6)
    graph = filter_graph(_ntsc_timeline(ranges=_ranges((5, 1000), (2000, 2002))), PROFILES["yoko"], None)
    assert "[0:v:0]fps=30000/1001," in graph
    assert ",segment=frames=5|1000|2000|2002[vs0][vs1][vs2][vs3][vs4]" in graph
    assert ",asegment=samples=8008|1601600|3203200|3206404[as0]" in graph  # 2002 * 1601.6 rounds up
    assert "[vs0]nullsink" in graph and "[vs1]setpts=PTS-STARTPTS[v0]" in graph
    assert "[v0][a0][v1][a1]concat=n=2:v=1:a=1" in graph and "scale=1920:1080" in graph


def test_command_carries_profile_and_measurement(tmp_path: Path) -> None:
    loud = LoudnessMeasurement(input_i=-23.5, input_tp=-6.1, input_lra=4.2, input_thresh=-34.0, target_offset=0.3)
    cmd = render_command(
        _ntsc_timeline(ranges=_ranges((0, 300)), **TATE_SIZE), tmp_path / "o.mp4", PROFILES["tate"], loud
    )
    joined = " ".join(cmd)
    assert cmd[-1] == f"file:{tmp_path / 'o.mp4'}"
    expected = [
        "-movflags +faststart", "-c:v libx264", "-preset veryfast", "-crf 21", "-pix_fmt yuv420p",
        "-c:a aac", "-b:a 160k", "-protocol_whitelist file,pipe", "-i file:/media/in.mp4",
    ]  # fmt: skip
    for part in expected:
        assert part in joined
    # -23.5 LUFS to -14 is +9.5 dB; the true peak -6.1 becomes +3.4 dBTP: limited under -1.
    assert "[ac]volume=9.50dB,alimiter=" in joined and ":level=false:latency=true" in joined
    assert "loudnorm" not in joined
    assert "aresample=48000,aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo[aout]" in joined
    assert "-an" not in cmd and "-shell" not in joined


def test_silent_measurement_is_not_amplified() -> None:
    # ebur128's summary of digital silence (or of less than one 400 ms block), as ffmpeg 5.1 prints it.
    log = (
        "[Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -70.0 LUFS\n"
        "    Threshold:   0.0 LUFS\n\n  Loudness range:\n    LRA:         0.0 LU\n    Threshold:   0.0 LUFS\n"
        "    LRA low:     0.0 LUFS\n    LRA high:    0.0 LUFS\n\n  True peak:\n    Peak:       -inf dBFS\n"
    )
    silent = parse_ebur128_summary(log, -14.0)
    assert silent.is_silent and math.isinf(silent.input_i)
    graph = filter_graph(_ntsc_timeline(ranges=_ranges((0, 30)), **TATE_SIZE), PROFILES["tate"], silent)
    assert "volume" not in graph and "alimiter" not in graph


def test_moving_crop_script_is_even_clamped_and_half_a_frame_early(tmp_path: Path) -> None:
    timeline = _ntsc_timeline(
        crop_width=607, crop_height=1080, ranges=_ranges((0, 30_000)), **TATE_SIZE,
        crop=[CropKey(frame=0, x=101, y=0), CropKey(frame=10, x=101, y=0), CropKey(frame=11, x=2000, y=3),
              CropKey(frame=20, x=8, y=0)],
    )  # fmt: skip
    # Width 607 -> 606; x 101 -> 100; x 2000 clamps to 1920 - 606; the repeated key at 10 is dropped.
    assert crop_positions(timeline) == [(0, 100, 0), (11, 1314, 0), (20, 8, 0)]
    at_11, at_20 = f"{10.5 * 1001 / 30000:.9f}", f"{19.5 * 1001 / 30000:.9f}"
    # Crop rounds down to even: each value is one more, so that a sloped line rounds to nearest.
    assert crop_commands(timeline) == f"{at_11}-{at_20} crop x 1315;\n{at_20} crop x 9;\n"
    with pytest.raises(ValueError, match="crop_file"):
        render_command(timeline, tmp_path / "o.mp4", PROFILES["tate"], None)
    cmd = render_command(timeline, tmp_path / "o.mp4", PROFILES["tate"], None, work_dir=tmp_path)
    assert f"sendcmd=f={tmp_path}/crop.cmd,crop=w=606:h=1080:x=100:y=0" in " ".join(cmd)


def test_thousands_of_ranges_use_a_graph_script(tmp_path: Path) -> None:
    """A graph longer than one argument may be (128 KiB on Linux) goes through -filter_complex_script."""
    timeline = _ntsc_timeline(ranges=_ranges(*[(10 * i, 10 * i + 5) for i in range(2_000)]))
    cmd = render_command(timeline, tmp_path / "o.mp4", PROFILES["yoko"], None, work_dir=tmp_path)
    assert "-filter_complex_script" in cmd and max(len(a) for a in cmd) < 1000
    render_mod.write_work_files(timeline, PROFILES["yoko"], None, tmp_path)
    assert "concat=n=2000" in (tmp_path / "graph.txt").read_text()


def test_timelines_the_render_cannot_honour_are_refused() -> None:
    with pytest.raises(ValueError, match="ascending"):
        filter_graph(_ntsc_timeline(ranges=_ranges((100, 200), (0, 50))), PROFILES["yoko"], None)
    tate_crop = _ntsc_timeline(crop_width=606, crop_height=1080, ranges=_ranges((0, 10)), **TATE_SIZE)
    assert "crop=w=606:h=1080:x=656:y=0" in filter_graph(tate_crop, PROFILES["tate"], None)  # centred
    with pytest.raises(ValueError, match="aspect"):
        filter_graph(tate_crop, PROFILES["square"], None)  # would be stretched
