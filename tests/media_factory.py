"""Test media made on the fly with ffmpeg lavfi, espeak-ng and numpy, so each test knows its truth."""

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SOURCES = ["testsrc2", "smptebars", "mandelbrot", "rgbtestsrc", "yuvtestsrc", "cellauto", "life"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def shots_clip(
    path: Path, frames_per_shot: list[int], fps: int = 25, size: str = "640x360", audio: bool = True
) -> list[int]:
    """Shots from different lavfi sources joined by hard cuts; returns the first frame of each new shot."""
    inputs: list[str] = []
    labels = []
    for i, frames in enumerate(frames_per_shot):
        source = SOURCES[i % len(SOURCES)]
        extra = ":rule=110" if source == "cellauto" else ""
        inputs += ["-f", "lavfi", "-i", f"{source}=s={size}:r={fps}{extra}"]
        labels.append(f"[{i}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,format=yuv420p,setsar=1[v{i}]")
    graph = ";".join(labels) + ";" + "".join(f"[v{i}]" for i in range(len(frames_per_shot)))
    graph += f"concat=n={len(frames_per_shot)}:v=1:a=0[v]"
    total = sum(frames_per_shot) / fps
    audio_args = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={total}"] if audio else []
    maps = ["-map", "[v]"] + (["-map", f"{len(frames_per_shot)}:a", "-c:a", "aac"] if audio else [])
    ffmpeg(*inputs, *audio_args, "-filter_complex", graph, *maps, "-c:v", "libx264", "-preset", "ultrafast",
           "-g", "250", "-t", f"{total}", str(path))  # fmt: skip
    return [int(x) for x in np.cumsum(frames_per_shot)[:-1]]


@dataclass
class TalkClip:
    path: Path
    speech: list[tuple[float, float]]  # ground-truth voiced intervals, seconds
    duration: float


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    return data, rate


def talk_clip(
    path: Path,
    phrases: list[str],
    pauses: list[float],
    noise: float = 0.003,
    size: str = "640x360",
    fps: int = 25,
    lead: float = 0.5,
) -> TalkClip:
    """espeak-ng phrases separated by known pauses over light noise, with a testsrc2 picture."""
    assert len(pauses) == len(phrases) - 1
    rate = 16000
    pieces = [np.zeros(int(lead * rate), dtype=np.float32)]
    speech: list[tuple[float, float]] = []
    t = lead
    work = path.parent
    for i, text in enumerate(phrases):
        wav = work / f".{path.stem}_phrase{i}.wav"
        subprocess.run(["espeak-ng", "-s", "170", "-w", str(wav), text], check=True)
        voice, vrate = _read_wav(wav)
        if vrate != rate:
            idx = np.arange(0, len(voice), vrate / rate).astype(int)
            voice = voice[idx[idx < len(voice)]]
        loud = np.flatnonzero(np.abs(voice) > 0.01)
        voice = voice[loud[0] : loud[-1] + 1]  # trim espeak's own silence so the truth is exact
        speech.append((t, t + len(voice) / rate))
        pieces.append(voice)
        t += len(voice) / rate
        gap = pauses[i] if i < len(pauses) else lead
        pieces.append(np.zeros(int(gap * rate), dtype=np.float32))
        t += int(gap * rate) / rate
        wav.unlink()
    audio = np.concatenate(pieces)
    audio += np.random.default_rng(7).normal(0, noise, len(audio)).astype(np.float32)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    raw = work / f".{path.stem}.wav"
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    duration = len(audio) / rate
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={duration}", "-i", str(raw),
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    raw.unlink()
    return TalkClip(path, speech, duration)


def moving_subject_clip(
    path: Path, seconds: float = 6.0, fps: int = 25, size: tuple[int, int] = (640, 360)
) -> list[tuple[float, float]]:
    """A bright disc moving left to right and back over a dark textured background.

    Returns the disc's centre (x, y) in pixels for every frame.
    """
    w, h = size
    n = int(seconds * fps)
    rng = np.random.default_rng(3)
    background = (rng.random((h, w)) * 40).astype(np.uint8)
    ys, xs = np.mgrid[0:h, 0:w]
    path_xy = []
    proc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
         "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(path)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    for i in range(n):
        phase = i / max(1, n - 1)
        cx = 0.12 * w + 0.76 * w * (1 - abs(2 * phase - 1))
        cy = h / 2 + 0.15 * h * np.sin(2 * np.pi * phase)
        frame = background.copy()
        frame[(xs - cx) ** 2 + (ys - cy) ** 2 < (0.08 * h) ** 2] = 230
        proc.stdin.write(frame.tobytes())
        path_xy.append((float(cx), float(cy)))
    proc.stdin.close()
    assert proc.wait() == 0
    return path_xy


def replace_render(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, comment: str = "", wrong: bool = False) -> None:
    """Make the render assets' next renders differ: the real render re-tagged with `comment` (still
    good), or, `wrong`, a black 640x360 clip without sound (fails the blocking checks)."""
    from autoedit_dagster.assets import profile_assets

    real = profile_assets.render

    def different_render(timeline, output, profile):
        result = real(timeline, output, profile)
        if wrong:
            ffmpeg("-f", "lavfi", "-i", "color=c=black:s=640x360:r=25:d=3", "-c:v", "libx264", "-preset", "ultrafast",
                   "-pix_fmt", "yuv420p", str(result.output))  # fmt: skip
        else:
            tagged = tmp_path / "tagged.mp4"
            ffmpeg("-i", str(result.output), "-map", "0", "-c", "copy", "-metadata", f"comment=re-render {comment}",
                   str(tagged))  # fmt: skip
            shutil.move(tagged, result.output)
        return result

    monkeypatch.setattr(profile_assets, "render", different_render)
