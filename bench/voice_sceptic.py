"""Where the voice detector's cut goes wrong: realistic cases the `voice` bench does not cover.

    python -m bench.voice_sceptic          # writes its section of bench/RESULTS.md

Each case is generated with known truth (espeak-ng voices, synthesised beds, the shared film's
score) and analysed by the real one-pass analysis, then cut with the default settings. Per case:
the share of the main voice's speech kept and of everything else removed; per family the worst of
each (not the mean). Families:

- a bed that itself holds a voice ("voice bed"): another espeak voice talking 12 to 25 dB under
  the main voice, chatter (four voices), a café (chatter and street); or "singing" ("sung bed":
  slow, high, over a pad or a band) 15 to 20 dB under; the truth is the main voice only;
- a quieter voice that is not a bed, so every word of it counts: an off-microphone interviewer 6
  to 20 dB under the answers, the speaker turning or walking away (12 or 16 dB quieter for every
  other sentence, the second half, or most of the file), over quiet and noisier rooms;
- applause (dense claps) or laughter (voiced "ha-ha" pulses) between sentences, as loud as the
  voice or 6 dB under; also how much of the bursts is kept;
- a phone call (300-3400 Hz band) over a little line noise;
- whispering (espeak-ng's `+whisper` / `+female_whisper`) over room tone;
- two speakers alternating with short gaps (0.15-0.5 s) and one overlap;
- strong reverb (ffmpeg `aecho`, and a 1.2 s diffuse tail); the truth is the dry voice;
- a long file (10.5 minutes of sparse speech over room tone or a music bed);
- a very short file (1-2 s, one word).

`SCEPTIC_CACHE=dir` keeps each case's analysis table, so the cut can be re-judged without
analysing again; `SCEPTIC_ONLY=word` runs only the cases whose name holds it.
"""

import hashlib
import json
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl

from autoedit_dagster.engine import analysis
from autoedit_dagster.engine.config import SilenceSettings
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.speech import find_speech
from bench.quiet_speakers import bed
from bench.run import VOICE_PAUSES, VOICE_PHRASES, overlap, write_results
from testsupport.media_factory import (
    RATE,
    _read_wav,
    at_level,
    espeak,
    music,
    noise,
    speech_track,
    street,
    voiced_rms_db,
    write_clip,
)

OTHER_TEXT = (
    "And so the committee met again on Tuesday to discuss the budget for the coming year, "
    "which nobody had read, and which everybody had an opinion about, as usual."
)
TEST_PHRASES = ["We will now look at the numbers.", "Editing by hand takes a long time.", "Thank you for watching."]
SPEECH = [(-20.0, "en", 170), (-20.0, "en-us+f3", 150), (-20.0, "en+m7", 210)]
ANSWERS = ["Well, I started editing videos about ten years ago, mostly for friends.",
           "It took a long time, because every pause had to be found by hand.",
           "Now most of that work is done before I even open the project.",
           "I still check every cut, but it is much faster than it used to be."]  # fmt: skip
QUESTIONS = ["How did you start?", "Why was it so slow?", "And what changed?", "Do you trust it?"]
MORE_SENTENCES = ["The weather was terrible on Saturday, so we stayed at home.",
                  "My sister called to say that the train was late again.",
                  "I think we should book the tickets before the end of the month.",
                  "Honestly, I have no idea where the receipt went."]  # fmt: skip


def band(audio: np.ndarray, low: float, high: float) -> np.ndarray:
    """`audio` with everything outside [low, high] Hz removed (FFT mask)."""
    spectrum = np.fft.rfft(audio)
    f = np.fft.rfftfreq(len(audio), 1 / RATE)
    spectrum[(f < low) | (f > high)] = 0
    return np.fft.irfft(spectrum, len(audio)).astype(np.float32)


def ffmpeg_filter(audio: np.ndarray, graph: str) -> np.ndarray:
    """`audio` through an ffmpeg audio filter graph (same length: the tail past the end is cut)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        import wave

        with wave.open(str(src), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-af", graph, "-ar", str(RATE), str(dst)],
                       check=True)  # fmt: skip
        out, _ = _read_wav(dst)
    return np.resize(out, len(audio)) if len(out) < len(audio) else out[: len(audio)]


def hall(audio: np.ndarray, rt60: float, seed: int = 1, wet_db: float = 0.0) -> np.ndarray:
    """`audio` in a diffuse room: exponentially decaying noise as the impulse response (RT60 s)."""
    rng = np.random.default_rng(seed)
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    ir = rng.normal(0, 1, n) * 10 ** (-3 * t / rt60)
    ir[:400] *= np.linspace(0, 1, 400)  # the early gap before the diffuse tail
    wet = np.fft.irfft(np.fft.rfft(audio, len(audio) + n) * np.fft.rfft(ir, len(audio) + n))[: len(audio)]
    wet = wet * np.sqrt(np.mean(audio**2) / max(np.mean(wet**2), 1e-20)) * 10 ** (wet_db / 20)
    return (audio + wet).astype(np.float32)


def applause(seconds: float, seed: int) -> np.ndarray:
    """Unit-RMS clapping: many short bandpassed noise clicks, swelling in and dying away."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros(n)
    for at in rng.uniform(0, seconds - 0.01, int(40 * seconds)):
        i = int(at * RATE)
        out[i : i + 160] += rng.normal(0, 1, min(160, n - i)) * np.exp(-np.arange(min(160, n - i)) / 30)
    t = np.arange(n) / RATE
    out = band(out.astype(np.float32), 600, 6000) * np.clip(t / 0.3, 0, 1) * np.clip((seconds - t) / 0.8, 0, 1)
    return at_level(out.astype(np.float32), 0.0)


def laughter(seconds: float, seed: int) -> np.ndarray:
    """Unit-RMS laughter: breathy voiced "ha" pulses at ~5 Hz, falling in pitch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 260 * (1 - 0.25 * t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(h * phase) / h for h in range(1, 20)) + rng.normal(0, 0.6, n)
    voiced = band(voiced.astype(np.float32), 300, 3500)
    pulses = np.clip(np.sin(2 * np.pi * 4.7 * t), 0, 1) ** 2
    return at_level((voiced * pulses * np.clip((seconds - t) / seconds, 0.2, 1)).astype(np.float32), 0.0)


def place(length: float, parts: list[tuple[float, np.ndarray]]) -> np.ndarray:
    out = np.zeros(int(length * RATE), dtype=np.float32)
    for at, audio in parts:
        i = int(at * RATE)
        out[i : i + len(audio)] += audio[: len(out) - i]
    return out


Case = tuple[np.ndarray, list[tuple[float, float]], list[tuple[float, float]]]  # audio, speech, bursts


def main_voice(voice: str, speed: int, level: float = -20.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    talk, speech = speech_track(VOICE_PHRASES, VOICE_PAUSES, lead=1.0, voices=[(voice, speed)])
    return at_level(talk, level, voiced_rms_db(talk, speech)), speech


def cases() -> dict[str, Case]:
    out: dict[str, Case] = {}
    for k, (level, voice, speed) in enumerate(SPEECH):
        talk, speech = main_voice(voice, speed, level)
        seconds = len(talk) / RATE
        other = ["en-gb+m2", "en+f4", "en-us+m1"][k]
        background = np.resize(espeak(OTHER_TEXT, other, 150), len(talk))
        singing = np.resize(espeak(OTHER_TEXT.replace(",", ""), other, 80), len(talk))
        singing = ffmpeg_filter(singing, "asetrate=16000*1.25,aresample=16000,atempo=0.8")
        for under in (15, 20):
            bed = at_level(background, level - under)
            out[f"voice bed: {voice}@{speed} over {other} talking {under} dB under"] = (talk + bed, speech, [])
            sung = at_level(singing, level - under - 3) + at_level(music("pad", seconds, k), level - under - 3)
            name = f"sung bed: {voice}@{speed} over {other} 'singing' on a pad {under} dB under"
            out[name] = (talk + sung, speech, [])
        room = at_level(noise("pink", seconds, k), level - 35)
        # Bursts in the 1.6 s, 2.5 s and 3.0 s pauses (the only ones long enough for a 1 s burst).
        gaps = [(speech[i][1], speech[i + 1][0]) for i in range(len(speech) - 1)]
        spots = [(a + 0.25, b - a - 0.5) for a, b in gaps if b - a >= 1.5]
        for kind, make in (("applause", applause), ("laughter", laughter)):
            for under in (0, 6):
                made = [(a, at_level(make(d, 7 * k + j), level - under)) for j, (a, d) in enumerate(spots)]
                bursts = place(seconds, made)
                name = f"bursts: {voice}@{speed}, {kind} between sentences {under} dB under the voice"
                out[name] = (talk + bursts + room, speech, [(a, a + d) for a, d in spots])
        phone = band(talk, 300, 3400) + at_level(noise("white", seconds, k), level - 30)
        out[f"phone: {voice}@{speed}, 300-3400 Hz, line noise 30 dB under"] = (phone, speech, [])
        out[f"reverb: {voice}@{speed}, aecho (60-370 ms echoes)"] = (
            ffmpeg_filter(talk, "aecho=0.8:0.9:60|130|230|370:0.6|0.5|0.4|0.3") + room, speech, [])  # fmt: skip
        out[f"reverb: {voice}@{speed}, hall RT60 1.2 s, wet = dry"] = (hall(talk, 1.2, k) + room, speech, [])
        out[f"reverb: {voice}@{speed}, hall RT60 2 s, wet 6 dB over dry"] = (hall(talk, 2.0, k, 6.0) + room, speech, [])
    for voice in ("en+whisper", "en-us+female_whisper", "en-gb+whisper"):
        talk, speech = main_voice(voice, 150)
        seconds = len(talk) / RATE
        for room in (-45.0, -55.0):
            name = f"whisper: {voice}@150 at -20 dBFS over pink room {room:.0f} dBFS"
            out[name] = (talk + at_level(noise("pink", seconds, 9), room), speech, [])
        quiet = at_level(talk, -32.0, voiced_rms_db(talk, speech)) + at_level(noise("pink", seconds, 9), -50.0)
        out[f"whisper: {voice}@150 at -32 dBFS over pink room -50 dBFS"] = (quiet, speech, [])
    for voice in ("en+whisper", "en-us+whisper"):  # the tests' three phrases
        talk, speech = speech_track(TEST_PHRASES, [1.5, 2.0], lead=1.0, voices=[(voice, 150)])
        talk = at_level(talk, -20.0, voiced_rms_db(talk, speech))
        noisy = talk + at_level(noise("pink", len(talk) / RATE, 9), -55.0)
        out[f"whisper: {voice}@150, three short phrases, at -20 dBFS over pink room -55 dBFS"] = (noisy, speech, [])
    # Two speakers: A and B alternate with short gaps; B's fourth line starts under A's last words.
    lines = ["So where were you last night?", "At the office, why?", "Nobody answered the phone.",
             "It was switched off.", "That is not like you at all.", "I know, I know, I am sorry.",
             "Well, call me next time.", "I will, I promise."]  # fmt: skip
    for k, (a, b) in enumerate([(("en", 170), ("en-us+f3", 180)), (("en+m7", 200), ("en-gb-scotland+f4", 150))]):
        gaps = [0.3, 0.15, 0.5, 0.25, -0.6, 0.2, 0.4]  # negative: overlap
        parts, speech, t = [], [], 1.0
        for i, text in enumerate(lines):
            said = at_level(espeak(text, *(a if i % 2 == 0 else b)), -20.0 - 4 * (i % 2))
            parts.append((t, said))
            speech.append((t, t + len(said) / RATE))
            t += len(said) / RATE + (gaps[i] if i < len(gaps) else 0)
        seconds = t + 1.0
        audio = place(seconds, parts) + at_level(noise("pink", seconds, k), -55.0)
        name = f"two speakers: {a[0]} and {b[0]} (4 dB quieter), gaps 0.15-0.5 s, one 0.6 s overlap"
        out[name] = (audio, merge(speech), [])
    # Long: 630 s, a sentence every 15-60 s.
    rng = np.random.default_rng(4)
    parts, speech, t = [], [], 2.0
    while t < 615:
        said = at_level(espeak(VOICE_PHRASES[len(parts) % len(VOICE_PHRASES)], "en-us+f3", 160), -22.0)
        parts.append((t, said))
        speech.append((t, t + len(said) / RATE))
        t += len(said) / RATE + float(rng.uniform(15, 60))
    talk = place(630.0, parts)
    out["long: 630 s, a sentence every 15-60 s, pink room -50 dBFS"] = (
        talk + at_level(noise("pink", 630.0, 5), -50.0), speech, [])  # fmt: skip
    out["long: 630 s, a sentence every 15-60 s, piano bed 12 dB under"] = (
        talk + at_level(np.resize(music("piano", 32.0, 5), len(talk)), -34.0), speech, [])  # fmt: skip
    # Very short: one word.
    for word, voice, at, length in (("Yes.", "en", 0.4, 1.2), ("Hello.", "en-us+f3", 0.3, 1.5),
                                    ("Okay.", "en+m7", 0.8, 2.0), ("No.", "en-gb-scotland+f4", 0.1, 1.0)):  # fmt: skip
        said = at_level(espeak(word, voice, 170), -20.0)
        audio = place(length, [(at, said)]) + at_level(noise("pink", length, 2), -50.0)
        out[f"short: '{word}' by {voice} at {at} s in a {length} s file"] = (audio, [(at, at + len(said) / RATE)], [])
    out.update(more_beds())
    out.update(quieter_voices())
    return out


def more_beds() -> dict[str, Case]:
    """Voice beds with other voices, levels and rooms than the first twelve: a talker 12-25 dB under,
    chatter (four voices), a café (chatter and street), lyrics over a band; the truth is the speaker."""
    out: dict[str, Case] = {}
    talk, speech = main_voice("en-us+m3", 190)
    seconds = len(talk) / RATE
    other = np.resize(espeak(OTHER_TEXT, "en+f2", 160), len(talk))
    for under in (12, 17, 25):
        audio = talk + at_level(other, -20 - under) + at_level(noise("pink", seconds, 21), -55.0)
        out[f"voice bed: en-us+m3@190 over en+f2 talking {under} dB under"] = (audio, speech, [])
    talk, speech = main_voice("en-gb-x-rp+f5", 200)
    out["voice bed: en-gb-x-rp+f5@200 over chatter (four voices) 15 dB under"] = (
        talk + at_level(bed("babble", len(talk) / RATE, 5), -35.0), speech, [])  # fmt: skip
    talk, speech = main_voice("en+m1", 140)
    seconds = len(talk) / RATE
    sung = ffmpeg_filter(np.resize(espeak(OTHER_TEXT.replace(",", ""), "en-us+f2", 80), len(talk)),
                         "asetrate=16000*1.25,aresample=16000,atempo=0.8")  # fmt: skip
    out["sung bed: en+m1@140 over en-us+f2 'singing' on a pad 17 dB under"] = (
        talk + at_level(sung, -40) + at_level(music("pad", seconds, 3), -40), speech, [])  # fmt: skip
    out["sung bed: en+m1@140 over en-us+f2 'singing' with a band 15 dB under"] = (
        talk + at_level(sung, -38) + at_level(music("band", seconds, 4), -38), speech, [])  # fmt: skip
    talk, speech = main_voice("en-us+f2", 180)
    seconds = len(talk) / RATE
    other = np.resize(espeak(OTHER_TEXT, "en-gb-scotland+f4", 150), len(talk))
    out["voice bed: en-us+f2@180 over en-gb-scotland+f4 talking 15 dB under, pink room -45 dBFS"] = (
        talk + at_level(other, -35) + at_level(noise("pink", seconds, 14), -45.0), speech, [])  # fmt: skip
    out["voice bed: en-us+f2@180 in a café: chatter 18 dB under, street 25 dB under"] = (
        talk + at_level(bed("babble", seconds, 15), -38) + at_level(street(seconds, 3), -45), speech, [])  # fmt: skip
    return out


def _said(lines: list[tuple[str, tuple[str, int], float]], gaps: list[float]) -> tuple[np.ndarray, list, float]:
    """Lines (text, voice, dBFS) one after another with the gaps in turn; the audio, truth and length."""
    parts, speech, t = [], [], 1.0
    for i, (text, voice, level) in enumerate(lines):
        said = at_level(espeak(text, *voice), level)
        parts.append((t, said))
        speech.append((t, t + len(said) / RATE))
        t += len(said) / RATE + gaps[i % len(gaps)]
    return place(t + 1.0, parts), speech, t + 1.0


def quieter_voices() -> dict[str, Case]:
    """A quieter voice that is not background: an off-microphone interviewer, the speaker turning or
    walking away. Every word of both counts as speech (the background-voice cut must keep them)."""
    out: dict[str, Case] = {}
    for under, room, kind in ((6, -55.0, "pink"), (10, -55.0, "pink"), (15, -55.0, "pink"), (20, -55.0, "pink"),
                              (15, -45.0, "brown")):  # fmt: skip
        lines = [line for question, answer in zip(QUESTIONS, ANSWERS, strict=True)
                 for line in ((question, ("en-us+f3", 170), -20.0 - under), (answer, ("en", 170), -20.0))]  # fmt: skip
        audio, speech, seconds = _said(lines, [0.7])
        out[f"quieter voice: interview, questions {under} dB under the answers, {kind} room {room:.0f} dBFS"] = (
            audio + at_level(noise(kind, seconds, 8), room), speech, [])  # fmt: skip
    lines = [(f"{q} {a}", ("en-us+f3", 190), -35.0) for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    lines = [x for pair in zip(lines, [(a, ("en", 170), -20.0) for a in ANSWERS], strict=True) for x in pair]
    audio, speech, seconds = _said(lines, [0.3])
    out["quieter voice: interview, long questions 15 dB under, 0.3 s turns, brown room -45 dBFS"] = (
        audio + at_level(noise("brown", seconds, 17), -45.0), speech, [])  # fmt: skip
    sentences = VOICE_PHRASES + ANSWERS
    half = len(sentences) // 2
    for under in (12, 16):
        lines = [(text, ("en+m7", 190), -20.0 - (under if i >= half else 0)) for i, text in enumerate(sentences)]
        audio, speech, seconds = _said(lines, [0.6, 1.2, 0.9, 2.0])
        out[f"quieter voice: the second half {under} dB quieter (walking away), pink room -50 dBFS"] = (
            audio + at_level(noise("pink", seconds, 9), -50.0), speech, [])  # fmt: skip
        lines = [(text, ("en-us+f2", 170), -20.0 - (under if i % 2 else 0)) for i, text in enumerate(sentences)]
        audio, speech, seconds = _said(lines, [0.6, 1.2, 0.9, 2.0])
        out[f"quieter voice: every other sentence {under} dB quieter (turning away), pink room -50 dBFS"] = (
            audio + at_level(noise("pink", seconds, 9), -50.0), speech, [])  # fmt: skip
    lines = [(text, ("en-gb+m2", 170), -20.0 - (16 if i >= half else 0)) for i, text in enumerate(sentences)]
    audio, speech, seconds = _said(lines, [0.6, 1.2, 0.9, 2.0])
    out["quieter voice: the second half 16 dB quieter, pink room -42 dBFS"] = (
        audio + at_level(noise("pink", seconds, 12), -42.0), speech, [])  # fmt: skip
    sentences = VOICE_PHRASES + ANSWERS + QUESTIONS
    for near, room in ((0.3, -42.0), (0.45, -50.0)):
        lines = [(text, ("en+m7", 190), -20.0 - (16 if i >= round(near * len(sentences)) else 0))
                 for i, text in enumerate(sentences)]  # fmt: skip
        audio, speech, seconds = _said(lines, [0.4, 0.3, 0.5])
        name = f"quieter voice: {1 - near:.0%} of the sentences 16 dB quieter, short pauses, pink room {room:.0f} dBFS"
        out[name] = (audio + at_level(noise("pink", seconds, 16), room), speech, [])
    out.update(_quick_turns())
    return out


def _quick_turns() -> dict[str, Case]:
    """Turns with short gaps (0.3-0.4 s) over noisier rooms, where the model bridges the gaps and the
    quieter voice fills most of the louder one's silences, as a bed would (a review session's cases)."""
    long = VOICE_PHRASES + ANSWERS + MORE_SENTENCES
    out: dict[str, Case] = {}
    for near_n, gap in ((2, 0.3), (3, 0.3)):
        lines = []
        for k in range(5):
            lines += [(long[(4 * k + j) % len(long)], ("en", 170), -20.0) for j in range(near_n)]
            lines += [(long[(4 * k + 2 + j) % len(long)], ("en-us+f3", 175), -34.0) for j in range(2)]
        audio, speech, seconds = _said(lines, [gap])
        name = f"quieter voice: a call, the far side 14 dB under, {near_n}:2 sentences a turn, {gap} s gaps, brown -44"
        out[name] = (audio + at_level(noise("brown", seconds, 7), -44.0), merge(speech), [])
    lines = []
    for k in range(5):
        lines.append(
            ("Could you say more about that, and about how long it took you in the end?", ("en-us+f2", 175), -16.0)
        )
        lines += [(long[(3 * k + j) % len(long)], ("en+m1", 160), -31.0) for j in range(2)]
    audio, speech, seconds = _said(lines, [0.4, 0.35, 0.35])
    out["quieter voice: a lecture's Q&A, the lecturer 15 dB under the questioner, brown room -43 dBFS"] = (
        audio + at_level(noise("brown", seconds, 9), -43.0), merge(speech), [])  # fmt: skip
    gaps = np.random.default_rng(11).choice([0.3, 0.4], 14).tolist()
    lines = [(long[i], ("en-gb+m2", 175), -20.0 - (16 if i >= 8 else 0)) for i in range(14)]
    audio, speech, seconds = _said(lines, gaps)
    out["quieter voice: the last 6 of 14 sentences 16 dB quieter (stepping back), 0.3-0.4 s gaps, pink room -48"] = (
        audio + at_level(noise("pink", seconds, 6), -48.0), speech, [])  # fmt: skip
    gaps = np.random.default_rng(17).choice([0.5, 0.9, 1.5], 10).tolist()
    lines = [(long[i], ("en-us+f2", 180), -20.0 - (14 if i in (4, 5) else 0)) for i in range(10)]
    audio, speech, seconds = _said(lines, gaps)
    out["quieter voice: in a café (chatter 15 dB under), two of ten sentences turned away, 14 dB quieter"] = (
        audio + at_level(bed("babble", seconds, 3), -35.0), speech, [])  # fmt: skip
    # One-sentence replies (2.3-3.6 s) right after each of the host's sentences: what the background
    # cut still takes (a second review session's cases), so it is not the default.
    replies = ["That must have been really frustrating for everyone.", "Wait, so you did all of that by yourself?",
               "So you are saying the whole team had to start again from scratch?",
               "I think most people would agree with you there.", "So what would you do differently next time?",
               "And how did the client react when they saw the first cut?",
               "Was that before or after you moved to the new office?",
               "Okay, but how much of that was actually planned?",
               "I remember when we tried that last year and it did not work at all.",
               "That is funny, because we had the exact same problem."]  # fmt: skip
    lines = [x for i in range(10) for x in ((long[i], ("en", 170), -20.0), (replies[i], ("en-us+f3", 175), -34.0))]
    gaps = np.random.default_rng(5).choice([0.2, 0.3], 20).tolist()
    audio, speech, seconds = _said(lines, gaps)
    out["quieter voice: one-sentence replies 14 dB under, 0.2-0.3 s gaps, pink room -44 dBFS"] = (
        audio + at_level(noise("pink", seconds, 12), -44.0), merge(speech), [])  # fmt: skip
    lines = [x for i in range(10) for x in ((long[i], ("en", 170), -20.0), (replies[i], ("en-us+f3", 175), -36.0))]
    gaps = np.random.default_rng(21).choice([0.3, 0.4], 20).tolist()
    audio, speech, seconds = _said(lines, gaps)
    out["quieter voice: one-sentence replies 16 dB under, in a café (chatter 24 dB under)"] = (
        audio + at_level(bed("babble", seconds, 23), -44.0), merge(speech), [])  # fmt: skip
    return out


def merge(speech: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping (start, end) intervals joined."""
    out: list[tuple[float, float]] = []
    for s, e in sorted(speech):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def judge(frames: pl.DataFrame, speech, bursts, duration: float, settings: SilenceSettings) -> dict:
    fps = Fraction(25)
    result = find_speech(frames, fps, settings)
    kept = [r.seconds(fps) for r in result.ranges]
    voiced = sum(e - s for s, e in speech)
    voiced_kept = sum(overlap(kept, s, e) for s, e in speech)
    kept_s = sum(e - s for s, e in kept)
    row = {
        "speech_kept": voiced_kept / voiced,
        "non_speech_removed": 1 - (kept_s - voiced_kept) / (duration - voiced) if duration > voiced else 1.0,
        "kept_s": round(kept_s, 2),
        "duration_s": round(duration, 2),
    }
    if bursts:
        row["bursts_kept"] = sum(overlap(kept, s, e) for s, e in bursts) / sum(e - s for s, e in bursts)
    lost = [round(s, 2) for s, e in speech if (e - s) - overlap(kept, s, e) > 0.04]
    if lost:
        row["phrases_losing_over_0.04_s_start_at"] = lost
    if result.notes:
        row["notes"] = result.notes
    return row


def analysed(name: str, audio: np.ndarray, work: Path) -> pl.DataFrame:
    cache = os.environ.get("SCEPTIC_CACHE")
    stored = Path(cache) / f"{hashlib.sha1(name.encode()).hexdigest()[:12]}.parquet" if cache else None
    if stored and stored.exists():
        return pl.read_parquet(stored)
    path = work / "case.mp4"
    write_clip(path, audio)
    frames = analysis.analyze(probe(path))
    if stored:
        stored.parent.mkdir(parents=True, exist_ok=True)
        frames.write_parquet(stored)
    return frames


def main(settings: SilenceSettings | None = None) -> dict:
    settings = settings or SilenceSettings()
    only = os.environ.get("SCEPTIC_ONLY", "")
    results: dict[str, dict] = {}
    # The same tables cut with the background-voice cut (`--cut-background-voices`): what it changes.
    with_cut = settings.model_copy(update={"cut_background_voice": True})
    results_cut: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (audio, speech, bursts)) in enumerate(cases().items()):
            if only not in name:
                continue
            frames = analysed(name, audio, Path(tmp))
            # The table's own length (the picture can run a frame past the audio).
            results[name] = judge(frames, speech, bursts, frames.height / 25, settings)
            results_cut[name] = judge(frames, speech, bursts, frames.height / 25, with_cut)
            print(i, name, {k: v for k, v in results[name].items() if k != "phrases_losing_over_0.04_s_start_at"},
                  flush=True)  # fmt: skip
    return {
        "worst per family (default settings)": _worst(results),
        "worst per family cutting background voices (--cut-background-voices)": _worst(results_cut),
        "cases": results,
        "cases cutting background voices, where they differ": {
            name: row for name, row in results_cut.items() if row != results[name]
        },
    }


def _worst(results: dict[str, dict]) -> dict[str, dict]:
    worst: dict[str, dict] = {}
    for family in sorted({n.split(":")[0] for n in results}):
        rows = {n: r for n, r in results.items() if n.split(":")[0] == family}
        entry = {}
        for key in ("speech_kept", "non_speech_removed", "bursts_kept"):
            have = {n: r[key] for n, r in rows.items() if key in r}
            if have:
                pick = (max if key == "bursts_kept" else min)(have, key=have.__getitem__)
                entry[f"{'most' if key == 'bursts_kept' else 'worst'} {key}"] = {"value": have[pick], "case": pick}
        entry["cases"] = len(rows)
        worst[family] = entry
    return worst


if __name__ == "__main__":
    section = main()
    if os.environ.get("BENCH_WRITE", "1") == "1" and not os.environ.get("SCEPTIC_ONLY"):
        write_results({"voice detector, sceptic's cases (bench/voice_sceptic.py, default settings)": section})
    print(json.dumps(section["worst per family (default settings)"], indent=2))
