"""Test media made on the fly with ffmpeg lavfi, espeak-ng and numpy, so each test knows its truth."""

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
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


RATE = 16000
# espeak-ng voices (language + variant) and speeds that sound different enough to keep a voice
# detector honest: a man, a woman, a high and a low voice, a Scottish accent, slow and fast.
VOICES = [("en", 170), ("en-us+f3", 150), ("en+m7", 210), ("en-gb-scotland+f4", 130), ("en-us+m3", 190)]


def espeak(text: str, voice: str = "en", speed: int = 170, work: Path | None = None) -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz, float in [-1, 1], its own leading and trailing silence trimmed."""
    work = work or Path(tempfile.gettempdir())
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=work) as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", wav.name, text], check=True)
        audio, rate = _read_wav(Path(wav.name))
    if rate != RATE:
        idx = np.arange(0, len(audio), rate / RATE).astype(int)
        audio = audio[idx[idx < len(audio)]]
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]  # trimmed so the truth is exact


def speech_track(
    phrases: list[str], pauses: list[float], lead: float = 0.5, voices: list[tuple[str, int]] | None = None
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Phrases separated by exact pauses of digital silence, and the voiced interval of each (seconds).

    Phrase i is spoken by `voices[i % len(voices)]` (voice, words per minute); default one voice.
    """
    assert len(pauses) == len(phrases) - 1
    voices = voices or [VOICES[0]]
    pieces = [np.zeros(int(lead * RATE), dtype=np.float32)]
    speech: list[tuple[float, float]] = []
    t = int(lead * RATE)
    for i, text in enumerate(phrases):
        voice = espeak(text, *voices[i % len(voices)])
        speech.append((t / RATE, (t + len(voice)) / RATE))
        gap = int((pauses[i] if i < len(pauses) else lead) * RATE)
        pieces += [voice, np.zeros(gap, dtype=np.float32)]
        t += len(voice) + gap
    return np.concatenate(pieces).astype(np.float32), speech


def rms_db(audio: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))), 1e-9)))


def voiced_rms_db(audio: np.ndarray, speech: list[tuple[float, float]]) -> float:
    """RMS level (dBFS) of `audio` over the voiced intervals only: the level a listener hears."""
    return rms_db(np.concatenate([audio[int(s * RATE) : int(e * RATE)] for s, e in speech]))


def at_level(audio: np.ndarray, db: float, measured: float | None = None) -> np.ndarray:
    """`audio` scaled so its RMS (or the given `measured` level) becomes `db` dBFS."""
    return (audio * 10 ** ((db - (rms_db(audio) if measured is None else measured)) / 20)).astype(np.float32)


def noise(kind: str, seconds: float, seed: int = 7) -> np.ndarray:
    """Unit-RMS noise: `white`, `pink` (1/f, a room's air), `brown` (1/f², traffic rumble)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    shaped = np.fft.irfft(spectrum / {"white": 1.0, "pink": np.sqrt(f), "brown": f}[kind], n)
    return at_level(shaped.astype(np.float32), 0.0)


def street(seconds: float, seed: int = 11) -> np.ndarray:
    """Street-like noise: traffic rumble, cars passing (swelling noise), horns and clatter."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = noise("brown", seconds, seed) * 0.5 + noise("pink", seconds, seed + 1) * 0.2
    for _ in range(int(seconds / 3)):  # a car passing every ~3 s: band noise swelling over 2 s
        centre = rng.uniform(0, seconds)
        out += noise("pink", seconds, int(rng.integers(1 << 30))) * 0.8 * np.exp(-(((t - centre) / 0.7) ** 2))
    for _ in range(int(seconds / 8)):  # a horn: two detuned square-ish tones for 0.4 s
        start, f0 = rng.uniform(0, seconds - 0.5), rng.uniform(350, 500)
        on = (t >= start) & (t < start + 0.4)
        out[on] += 0.3 * np.sign(np.sin(2 * np.pi * f0 * t[on])) + 0.3 * np.sign(np.sin(2 * np.pi * f0 * 1.26 * t[on]))
    for _ in range(int(seconds)):  # clatter: short clicks and knocks
        at = int(rng.uniform(0, n - 800))
        out[at : at + 800] += rng.normal(0, 1.5, 800) * np.exp(-np.arange(800) / 120)
    return at_level(out.astype(np.float32), 0.0)


def music(kind: str, seconds: float, seed: int = 5) -> np.ndarray:
    """Unit-RMS synthesised music with no voice.

    `piano`: decaying harmonic notes of a chord progression; `pad`: sustained strings-like chords
    with vibrato; `band`: kick, snare, hi-hat and a bass line; `film`: the shared Big Buck Bunny
    excerpt's soundtrack (orchestral), looped.
    """
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    chords = [[0, 4, 7], [-3, 0, 4], [-7, -3, 0], [-5, -1, 2]]  # I vi IV V, semitones from A4
    out = np.zeros(n, dtype=np.float64)
    if kind == "film":
        if not (SHARED_MEDIA / "bigbuckbunny.mp4").exists():
            pytest.skip("../shared/media/bigbuckbunny.mp4 is not beside this checkout")
        # The excerpt's opening 2.6 s: from 2.7 s on the bunny yawns, and a yawn is a voice.
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
            ffmpeg("-i", str(SHARED_MEDIA / "bigbuckbunny.mp4"), "-t", "2.6", "-vn", "-ac", "1", "-ar", str(RATE),
                   "-c:a", "pcm_s16le", wav.name)  # fmt: skip
            film, _ = _read_wav(Path(wav.name))
        out = np.resize(film, n).astype(np.float64)
    elif kind in ("piano", "pad"):
        beat = 0.5 if kind == "piano" else 2.0
        for k, start in enumerate(np.arange(0, seconds, beat)):
            chord = chords[(k // (4 if kind == "piano" else 1)) % len(chords)]
            notes = [chord[int(rng.integers(3))]] if kind == "piano" else chord
            i0 = int(start * RATE)
            tt = t[i0:] - start
            for semis in notes:
                f0 = 440 * 2 ** (semis / 12) * (0.5 if kind == "pad" else 1)
                if kind == "pad":
                    f = f0 * (1 + 0.004 * np.sin(2 * np.pi * 5 * tt))
                    env = np.clip(tt / 0.3, 0, 1) * np.clip((beat + 0.3 - tt) / 0.3, 0, 1)
                else:
                    f, env = f0, np.exp(-tt * 3)
                phase = 2 * np.pi * np.cumsum(np.broadcast_to(f, tt.shape)) / RATE
                out[i0:] += env * sum(np.sin(h * phase) / h**1.5 for h in range(1, 7))
    elif kind == "band":
        for start in np.arange(0, seconds, 0.25):  # 120 bpm in eighths
            i0, step = int(start * RATE), round(start / 0.25)
            tt = t[i0 : i0 + RATE // 2] - start
            if step % 4 == 0:  # kick
                out[i0 : i0 + len(tt)] += np.sin(2 * np.pi * (50 + 80 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
            if step % 4 == 2:  # snare
                out[i0 : i0 + len(tt)] += rng.normal(0, 0.5, len(tt)) * np.exp(-tt * 20)
            out[i0 : i0 + len(tt)] += rng.normal(0, 0.15, len(tt)) * np.exp(-tt * 80)  # hi-hat
            bass = 55 * 2 ** (chords[(step // 8) % 4][0] / 12)
            out[i0 : i0 + len(tt)] += 0.6 * np.sign(np.sin(2 * np.pi * bass * tt)) * np.exp(-tt * 6)
    else:
        raise ValueError(kind)
    return at_level(out.astype(np.float32), 0.0)


def mix_under(voice: np.ndarray, speech: list[tuple[float, float]], bed: np.ndarray, db_under: float) -> np.ndarray:
    """`voice` with `bed` (looped or cut to its length) `db_under` dB under the voice's voiced RMS."""
    bed = np.resize(bed, len(voice))
    return voice + at_level(bed, voiced_rms_db(voice, speech) - db_under)


def write_clip(path: Path, audio: np.ndarray, size: str = "160x90", fps: int = 25) -> float:
    """An mp4 of `audio` (16 kHz float) under a testsrc2 picture; returns its duration (s)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    raw = path.with_name(f".{path.stem}.wav")
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    duration = len(audio) / RATE
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={duration}", "-i", str(raw),
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    raw.unlink()
    return duration


def talk_clip(
    path: Path,
    phrases: list[str],
    pauses: list[float],
    noise: float = 0.003,
    size: str = "640x360",
    fps: int = 25,
    lead: float = 0.5,
) -> TalkClip:
    """espeak-ng phrases separated by known pauses over light white noise, with a testsrc2 picture."""
    audio, speech = speech_track(phrases, pauses, lead)
    audio += np.random.default_rng(7).normal(0, noise, len(audio)).astype(np.float32)
    return TalkClip(path, speech, write_clip(path, audio, size, fps))


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
