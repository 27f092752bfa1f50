"""Settings for every stage of the engine, one pydantic model per concern, with documented defaults.

These are plain values: the CLI uses the defaults, the Dagster assets expose them as run config.
"""

from typing import Literal, NamedTuple

from pydantic import BaseModel, Field, field_validator

from autoedit_dagster.names import DEFAULT_PROFILE, SQUARE, TATE, X264_PRESETS, YOKO

from .errors import BadRequest
from .timeline import crop_size, even

# A size is of an aspect when this close to it: even pixels round a 9:16 window of a 360-line
# source to 202 wide, not 202.5 (crops, requested sizes and the render's checks all allow it).
ASPECT_TOLERANCE = 0.02


class InputLimits(BaseModel):
    """Refuse hostile or absurd uploads before decoding a single frame."""

    max_file_bytes: int = Field(default=8 * 1024**3, description="Largest input file accepted (bytes).")
    max_duration_s: float = Field(default=4 * 3600.0, description="Longest input accepted (seconds).")
    max_width: int = Field(default=7680, description="Widest displayed frame accepted (pixels).")
    max_height: int = Field(default=7680, description="Tallest displayed frame accepted (pixels).")
    max_fps: float = Field(default=240.0, description="Highest frame rate accepted.")


class AnalysisSettings(BaseModel):
    """The one decode pass: how small the frames are and how often subjects are looked for."""

    width: int = Field(default=256, ge=64, le=1280, description="Width of analysis frames (pixels).")
    face_width: int = Field(
        default=640,
        ge=64,
        le=1920,
        description="Width of the picture faces are searched in (pixels; the source's when narrower): "
        "640 makes a face a fifteenth of the frame tall ~24 px, about the detector's smallest.",
    )
    audio_rate: int = Field(default=16000, description="Sample rate of the mono analysis audio (Hz).")
    subject_fps: float = Field(
        default=2.0, gt=0, description="How many frames per second get a subject (face, else saliency)."
    )
    # At 0.25 a person walking into an empty picture, or a small face the first search missed, went
    # unseen for up to 4 s (worst centre inside 0.77); at 1 the film's pass costs ~2.3 CPU-s more
    # and no wall time: the searches run in the time the decode leaves idle (bench/RESULTS.md).
    face_search_fps: float = Field(
        default=1.0,
        gt=0,
        description="How often the whole picture is searched for faces while nobody is followed (and at "
        "every new shot); the subject already followed is looked for near its last place at `subject_fps`.",
    )
    people_search_fps: float = Field(
        default=0.125,
        gt=0,
        description="How often, at most, a whole-picture search that finds no face asks the people "
        "detector too (bodies seen from behind, ~30 ms of CPU a search).",
    )
    voice: bool = Field(
        default=True,
        description="Run the voice-activity model (the `speech_prob` column, ~0.3 s of CPU per minute of "
        "audio). Off, only the loudness can cut (`SilenceSettings.detector` falls back to it).",
    )
    loudness: bool = Field(
        default=False,
        description="Keep EBU R128's ingredients per frame (a 48 kHz stereo, K-weighted branch of the pass), "
        "so the render applies a measured gain with no measuring pass of its own. Off, the render measures "
        "the kept audio itself first: on the 10-minute film the branch costs the pass ~4.8 CPU-s more "
        "(1.4 in ffmpeg, 3.4 in Python) and ~2.2 s of wall time, where the render's measuring pass over "
        "the whole film's audio costs ~2.3 s.",
    )
    subjects: bool = Field(
        default=True,
        description="Look for the subject (faces, people, saliency) on sampled frames: what a reframing "
        "profile's crop follows. Off, the subject columns stay empty: an edit that keeps the whole frame "
        "(yoko) needs none, and skips the searches (~0.35 CPU-s of ~1.9 on a 30 s 720p source).",
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness added to the pass's Python threads (Linux): they yield the CPU to "
        "ffmpeg's decode, the pass's floor, and do their work in the time the decode leaves idle. 0 "
        "keeps the caller's priority, for a worker whose other jobs should not get the CPU first.",
    )


class SilenceSettings(BaseModel):
    """Which stretches of the audio are dead air worth cutting."""

    cut: bool = Field(
        default=True, description="Cut dead air at all; off, every frame is kept (reframe and normalise only)."
    )
    detector: Literal["voice", "loudness"] = Field(
        default="voice",
        description="What counts as worth keeping: `voice` (a voice-activity model: pauses go even under "
        "music or noise, a file with no voice keeps everything) or `loudness` (sound above the file's "
        "noise floor: for music videos and sound-driven edits).",
    )
    voice_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="With `voice`: a frame is speech at this speech probability or above."
    )
    # Over room tone the model sits at 0.01-0.1 and a quiet voice's first syllable at 0.1-0.4; at 0.1
    # the look-back also took noise before some onsets and cut a little less than the loudness
    # detector over room noise (bench/RESULTS.md, "voice detector" and "quiet speakers, varied").
    voice_onset_threshold: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="With `voice`: a stretch of speech starts earlier over the frames just before it at this "
        "speech probability or above (the soft start of a quiet word), up to `voice_onset_lookback_s`.",
    )
    voice_onset_lookback_s: float = Field(
        default=0.3, ge=0, description="With `voice`: how far back a stretch of speech may start earlier (0: off)."
    )
    # A voice at -30 dBFS over -45 dBFS room tone stands 1.4-2.8 dB over the floor by this measure (frame
    # RMS, the room's pink noise included), over brown noise 4.5-5.4, over a music bed or street more:
    # the extra lead lifted the worst quiet case from 0.956 to 0.983 of its speech kept and cost its
    # pauses 0.738 -> 0.660 removed; louder voices are untouched (bench/RESULTS.md, "quiet speakers").
    quiet_voice_db: float = Field(
        default=3.0,
        ge=0,
        description="With `voice`: a voice whose speech frames' median level stands less than this many dB "
        "above the file's noise floor is a quiet voice, and gets `quiet_voice_lead_s` more margin before it.",
    )
    quiet_voice_lead_s: float = Field(
        default=0.1,
        ge=0,
        le=2,
        description="With `voice`: extra sound kept before each stretch of a quiet voice (its soft first "
        "sounds lie in the room tone, where the model does not hear them); 0: off.",
    )
    # A voice far under the speaker fills every pause of a vlog in a café or over a song with lyrics;
    # the model hears it as speech, so those pauses stay. Cutting it is asked for, not the default:
    # the level and the model alone cannot always tell it from a quieter partner answering in short
    # turns over a noisy room or chatter, whose words it would cut (bench/RESULTS.md, "voice
    # detector, sceptic's cases"). Found either way, the report says so. `speech.py` has the rule.
    cut_background_voice: bool = Field(
        default=False,
        description="With `voice`: cut the stretches where only a background voice is heard (a voice "
        "`background_voice_db` or more under the speaker that talks through most of its pauses: chatter, "
        "sung lyrics under a vlog), like any pause. Off, such a voice is kept as speech and the report names it.",
    )
    background_voice_db: float = Field(
        default=12.0, gt=0, description="With `voice`: how far under the main speaker a background voice sits."
    )
    threshold_db: float = Field(
        default=12.0,
        ge=0,
        le=90,
        description="With `loudness`: a frame is loud when this many dB above the file's noise floor.",
    )
    min_threshold_dbfs: float = Field(
        default=-50.0, description="Never call a frame loud below this absolute level (dBFS)."
    )
    margin_before_s: float = Field(default=0.2, ge=0, le=10, description="Sound kept before each loud stretch.")
    margin_after_s: float = Field(default=0.2, ge=0, le=10, description="Sound kept after each loud stretch.")
    min_silence_s: float = Field(default=0.3, ge=0, le=60, description="Shorter silences (after margins) stay.")
    min_clip_s: float = Field(default=0.2, ge=0, description="Shorter loud stretches are dropped as noise.")
    floor_percentile: float = Field(
        default=10.0, gt=0, lt=100, description="Percentile of the frame levels taken as the noise floor."
    )


class ShotSettings(BaseModel):
    """Hard cuts and gradual transitions from the per-frame scene scores."""

    cut_threshold: float = Field(default=27.0, description="Content change (0-255 scale, HSV) that can be a hard cut.")
    adaptive_ratio: float = Field(
        default=3.0, description="A cut's score must also be this many times its neighbourhood's."
    )
    min_cut_score: float = Field(
        default=15.0,
        description="Weaker changes (down to this) are cuts only if the gray picture jumps as abruptly.",
    )
    min_shot_frames: int = Field(default=8, ge=1, description="No two boundaries closer than this.")
    flash_window_frames: int = Field(
        default=6, description="A change that returns to the old picture within this many frames is a flash."
    )
    gradual_threshold: float = Field(
        default=22.0,
        description="Change across a dissolve or fade that makes it a boundary (mean gray difference, "
        "0-255, between the pictures before and after).",
    )
    gradual_min_frames: int = Field(default=6, description="Shortest dissolve or fade considered.")
    adaptive_window_frames: int = Field(
        default=2, ge=1, description="Frames each side averaged as a cut's neighbourhood (AdaptiveDetector)."
    )
    flash_similarity: float = Field(
        default=0.5, description="Before and after a flash differ by less than this fraction of its jump."
    )
    dark_luma: float = Field(
        default=24.0,
        description="Next to frames darker than this (0-255) hue is noise: a cut needs a gray jump.",
    )
    gradual_step_margin: float = Field(
        default=0.5,
        description="Change per frame (gray levels) above the shots' own motion that marks a transition.",
    )
    gradual_linearity: float = Field(
        default=0.5, description="Net change over summed per-frame change a transition needs (1 = straight)."
    )
    gradual_context_s: float = Field(
        default=2.0, gt=0, description="Seconds each side over which the shots' own motion is measured."
    )


class ReframeSettings(BaseModel):
    """How the crop window follows the subject (stationary / panning / tracking, as AutoFlip).

    Distances are fractions of the crop window's width and speeds are crop widths per second, on
    both axes, so one setting looks the same on screen whatever the source size or aspect.
    """

    stationary_tolerance: float = Field(
        default=0.25,
        ge=0,
        description="Subject path spanning at most this (crop widths) in a shot: a fixed window.",
    )
    panning_tolerance: float = Field(
        default=0.12,
        ge=0,
        description="Subject path within this (crop widths) of a straight line: one steady pan.",
    )
    deadband: float = Field(
        default=0.08,
        ge=0,
        description="While tracking, subject wobble within this (crop widths) is ignored: no jitter.",
    )
    keep_margin: float = Field(
        default=0.3,
        ge=0,
        le=0.45,
        description="Subject centre kept this far (crop sizes) inside the window's edge, or half its box.",
    )
    max_velocity: float = Field(default=1.0, gt=0, description="Fastest crop move, in crop widths per second.")
    max_acceleration: float = Field(default=2.0, gt=0, description="Crop acceleration limit, crop widths per s².")
    smoothing_s: float = Field(
        default=0.2,
        ge=0,
        description="Gaussian sigma (seconds) rounding off the tracking path's changes of pace.",
    )
    min_face_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Share of a shot's sampled frames with a followed person (face, body or held) above "
        "which its saliency samples are ignored.",
    )


class EditProfile(BaseModel):
    """One deliverable: output geometry, whether it is reframed, loudness and encoding."""

    name: str
    aspect: tuple[int, int] | None = Field(description="Output aspect (w, h); None keeps the source's.")
    width: int | None = Field(description="Output width; None keeps the source size (yoko).")
    height: int | None = Field(description="Output height; None keeps the source size (yoko).")
    loudness_lufs: float = Field(default=-14.0, description="Integrated loudness target (LUFS).")
    true_peak_dbtp: float = Field(default=-1.0, description="True-peak ceiling (dBTP).")
    loudness_range_lu: float = Field(default=11.0, description="Loudness range target (LU).")
    video_codec: Literal["libx264"] = "libx264"
    preset: str = Field(default="veryfast", description="x264 speed preset.")
    crf: int = Field(default=21, ge=0, le=51, description="x264 constant rate factor.")
    audio_bitrate: str = Field(default="160k", description="AAC bitrate.")
    audio_rate: int = Field(default=48000, description="Output sample rate (Hz).")

    @property
    def reframes(self) -> bool:
        return self.aspect is not None


PROFILES: dict[str, EditProfile] = {
    TATE: EditProfile(name=TATE, aspect=(9, 16), width=1080, height=1920),
    SQUARE: EditProfile(name=SQUARE, aspect=(1, 1), width=1080, height=1080),
    YOKO: EditProfile(name=YOKO, aspect=None, width=None, height=None),
}


def get_profile(name: str = DEFAULT_PROFILE) -> EditProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


class OutputSettings(BaseModel):
    """The output's picture over the profile's: its size, frame rate and whether a small source grows.

    A size keeps the profile's aspect (the source's for a profile that keeps the frame): a height
    alone gets the width of that aspect, a width alone the height.
    """

    width: int | None = Field(default=None, ge=16, le=7680, description="Output width (pixels); None: the profile's.")
    height: int | None = Field(default=None, ge=16, le=7680, description="Output height (pixels); None: the profile's.")
    fps: float | None = Field(
        default=None, gt=0, le=240, description="Output frame rate (frames dropped or repeated); None: the source's."
    )
    upscale: bool = Field(
        default=True,
        description="Scale a source smaller than the output up to it. Off, the output is never larger than the "
        "source's pixels it shows: the largest even size of the aspect that fits them.",
    )


class OutputSize(NamedTuple):
    """The output's size, and how many times it enlarges the source pixels it shows (>1: upscaled)."""

    width: int
    height: int
    upscale: float


def output_size(settings: OutputSettings, profile: EditProfile, source_w: int, source_h: int) -> OutputSize:
    """The output's size for a `source_w` x `source_h` (displayed) source: `settings` over `profile`.

    Raises `BadRequest` for a requested width and height of another aspect than the profile's.
    """
    if profile.aspect is None:
        shown = (even(source_w, at_least=2), even(source_h, at_least=2))
        aspect, what = (source_w, source_h), f"the source's shape ({source_w}x{source_h})"
    else:
        shown = crop_size(source_w, source_h, profile.aspect)
        aspect, what = profile.aspect, f"the {profile.name} profile's aspect ({profile.aspect[0]}:{profile.aspect[1]})"
    aw, ah = aspect
    if settings.width and settings.height:
        w, h = even(settings.width), even(settings.height)
        if abs(w * ah / (h * aw) - 1) > ASPECT_TOLERANCE:
            raise BadRequest(
                f"{settings.width}x{settings.height} is not {what}; give a height alone and the width follows"
            )
    elif settings.height:
        h = even(settings.height)
        w = even(h * aw / ah, nearest=True, at_least=2)
    elif settings.width:
        w = even(settings.width)
        h = even(w * ah / aw, nearest=True, at_least=2)
    elif profile.width and profile.height:
        w, h = profile.width, profile.height
    else:
        w, h = shown
    if not settings.upscale and (w > shown[0] or h > shown[1]):
        # The source pixels shown are already the largest even window of the aspect.
        w, h = shown
    return OutputSize(w, h, h / shown[1])


class EncodeSettings(BaseModel):
    """The encoder's settings over the profile's (`EditProfile.crf`, `EditProfile.preset`)."""

    crf: int | None = Field(
        default=None, ge=0, le=51, description="x264 constant rate factor (lower: better, larger); None: the profile's."
    )
    # A plain string, checked: Dagster's run config takes no optional Literal.
    preset: str | None = Field(
        default=None,
        description=f"x264 speed preset, one of {', '.join(X264_PRESETS)} (slower: smaller at the same "
        "quality); None: the profile's.",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in X264_PRESETS:
            raise ValueError(f"not an x264 preset; choose one of {', '.join(X264_PRESETS)}")
        return value

    def apply(self, profile: EditProfile) -> EditProfile:
        """`profile` with these settings in place of its own."""
        given = {name: value for name, value in self.model_dump().items() if value is not None}
        return profile.model_copy(update=given) if given else profile


class EditSettings(BaseModel):
    """Everything one edit needs, with defaults; the unit the CLI and the assets pass around."""

    limits: InputLimits = InputLimits()
    analysis: AnalysisSettings = AnalysisSettings()
    silence: SilenceSettings = SilenceSettings()
    shots: ShotSettings = ShotSettings()
    reframe: ReframeSettings = ReframeSettings()
    output: OutputSettings = OutputSettings()
    encode: EncodeSettings = EncodeSettings()
