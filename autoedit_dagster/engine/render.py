"""The final render: one ffmpeg run that cuts, reframes, normalises loudness and encodes a `Timeline`.

One ffmpeg run that applies a measured gain to the target loudness (volume, and a limiter only when
the peak needs it). The measurement comes with the timeline (`Timeline.loudness`) when the analysis
kept R128's ingredients (`AnalysisSettings.loudness`, `loudness.py`); otherwise, the default, a
measuring pass runs first (`measure_loudness`: the audio alone, the same cut, measured by ffmpeg's
`ebur128`, the meter the render checks use), which on long files costs less than the analysis
branch would. A short edit the limiter holds down is measured again after it and made up
(`make_up`). The graph:

    [0:v:0] fps=F, setpts=N, sendcmd (crop keys), crop, segment=frames=a|b|…
        kept span -> setpts=PTS-STARTPTS -> concat input; cut span -> nullsink
    [0:a:0] aresample (sync to 0), aformat stereo, asegment=samples=(the same cuts, in samples)
        kept span -> asetpts=PTS-STARTPTS -> concat input; cut span -> anullsink
    concat -> settb, setpts=N, scale, setsar=1, yuv420p       -> libx264
           -> volume (measured gain), alimiter (only if the gain lifts the
              true peak past the ceiling), aresample, aformat                 -> AAC

Frame numbers are those of analysis: the `fps=` filter first, so source frame N is the N-th
frame after it (variable-rate input becomes constant-rate the same way in both places). Audio cut
points are the exact samples under those frames, computed with integer arithmetic, so every
kept span starts in sync.

The cut uses `segment`/`asegment`, which hand each frame to exactly one branch, rather than the
textbook `split` + one `trim` per range: with `split` every frame is cloned to every range and
ffmpeg's scheduler scans the whole graph once per filter woken, so its time grows with ranges²;
with `segment` 1000 ranges over 2 minutes of 720p take about twice as long as 2 ranges. Memory
stays flat: no branch ever holds more than the frame in flight.

The crop moves by `sendcmd` reading a script of "from time t, crop x (a line in n)" commands, one
per straight piece of the planned path (`crop_script`): a key on every frame costs nothing
per frame, and sendcmd's memory (~13 KB a command) stays small; one `x` expression for the whole
path would be one nested `if` per key, re-evaluated on every frame.

The output is written to a hidden temporary name beside it and renamed into place only when
ffmpeg succeeded.

Reads the environment only through `ffmpeg_io` (`AUTOEDIT_FFMPEG`, `AUTOEDIT_FFPROBE`).
"""

import math
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from pydantic import BaseModel, Field

from autoedit_dagster.names import OUTPUT_CONTAINERS

from . import ffmpeg_io, tempfiles
from .config import ASPECT_TOLERANCE, EditProfile
from .crop_script import crop_script
from .errors import BadRequest, CorruptMedia, FFmpegFailed
from .media_info import probe
from .timeline import SILENCE_LUFS, LoudnessMeasurement, Timeline, even

# One filter-graph argument must stay below Linux's MAX_ARG_STRLEN (128 KiB); longer graphs (a
# silence cut of a long recording can have thousands of ranges) go through a script file.
MAX_INLINE_GRAPH = 100_000
# Input read past the last kept frame, so the fps filter's end-of-stream handling and audio
# resampler delay can never touch a kept frame, while the unused tail of the source is not decoded.
READ_MARGIN_S = 2.0
# alimiter holds sample peaks; this much below the true-peak ceiling keeps the peaks between them
# under it too (a 4x-oversampled peak rarely exceeds the sample peak by more at 48 kHz).
LIMITER_MARGIN_DB = 0.5
# Share of the progress bar given to the audio-only measuring pass (it is far cheaper than encoding).
MEASURE_SHARE = 0.1
# A limiter that holds a short edit's loud transient down can lower its whole loudness by LUs (a
# 1 s cut of bigbuckbunny: -17.5 LUFS for -14). Up to this long, the kept audio is measured again
# after the gain and limiter, and made up (a second gain, the limiter again) at most
# MAKEUP_PASSES times, until within MAKEUP_TOLERANCE_LU: audio-only passes of under a minute.
# Longer, the few transients limited weigh little on the integrated loudness.
MAKEUP_MAX_S = 60.0
MAKEUP_PASSES = 3
MAKEUP_TOLERANCE_LU = 0.5
CROP_COMMANDS_FILE = "crop.cmd"
GRAPH_FILE = "graph.txt"


class RenderResult(BaseModel):
    """What `render` produced and how."""

    output: Path
    command: list[str] = Field(description="The final ffmpeg command (argument list).")
    output_duration: float = Field(description="Seconds, as probed from the written file.")
    loudness: LoudnessMeasurement | None = Field(
        description="The kept audio's measurement the gain came from (the analysis', or a measuring pass "
        "for a timeline without one); None without audio."
    )
    limited: bool = Field(
        default=False, description="A true-peak limiter ran: the gain would have lifted peaks past the ceiling."
    )
    makeup_db: float = Field(
        default=0.0, description="Gain added after the limiter, measured, to make up what it took (short edits)."
    )
    delivered_lufs: float | None = Field(
        default=None,
        description="Integrated loudness of the delivered audio chain (gain, limiter, make-up) as the make-up "
        "last measured it, when that measurement is of the chain rendered (a short, limited edit whose make-up "
        "landed within its tolerance); None when nobody measured it.",
    )
    wall_seconds: float


# --- pure helpers: geometry, cut points, crop commands, filter graph -------------------------------


def sample_at(frame: int, fps: Fraction, rate: int) -> int:
    """First audio sample at or after the start of source `frame` (exact integer arithmetic).

    The same function gives a range's end and the next range's start, so adjacent cuts tile exactly.
    """
    return -(-frame * rate * fps.denominator // fps.numerator)


def _crop_geometry(timeline: Timeline) -> tuple[int, int] | None:
    """Even crop size that fits the source, or None when the timeline does not crop."""
    if timeline.crop_width is None or timeline.crop_height is None:
        return None
    # yuv420p: an odd size or corner would shift chroma against luma; round down to even.
    width = even(min(timeline.crop_width, timeline.source_width))
    height = even(min(timeline.crop_height, timeline.source_height))
    if width < 2 or height < 2:
        raise ValueError(f"crop {timeline.crop_width}x{timeline.crop_height} is too small")
    return width, height


def crop_positions(timeline: Timeline) -> list[tuple[int, int, int]]:
    """(frame, x, y) where the crop moves: even, clamped inside the source, no repeated positions.

    The first entry is the position from frame 0 (the first key's, as `Timeline.crop_at`).
    """
    size = _crop_geometry(timeline)
    if size is None:
        return []
    width, height = size
    keys = timeline.crop or []
    if not keys:
        # No path: a centred, still crop.
        return [(0, even((timeline.source_width - width) // 2), even((timeline.source_height - height) // 2))]
    max_x, max_y = even(timeline.source_width - width), even(timeline.source_height - height)
    out: list[tuple[int, int, int]] = []
    for i, key in enumerate(sorted(keys, key=lambda k: k.frame)):
        x, y = min(even(key.x), max_x), min(even(key.y), max_y)
        frame = 0 if i == 0 else key.frame
        if out and out[-1][0] == frame:
            out[-1] = (frame, x, y)
        elif not out or out[-1][1:] != (x, y):
            out.append((frame, x, y))
    return out


def crop_commands(timeline: Timeline) -> str:
    """The sendcmd script moving the crop along the timeline's path (see `crop_script`)."""
    positions = crop_positions(timeline)
    if len(positions) < 2:
        return ""
    last_frame = max(r.end for r in timeline.ranges) if timeline.ranges else timeline.frame_count
    return crop_script(positions, last_frame, timeline.fps_exact)


def _escape_graph_value(value: str) -> str:
    """Quote a value for a filter option inside a filter graph (both levels of ffmpeg escaping)."""
    option_level = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", option_level)


def segments(timeline: Timeline) -> list[tuple[int, int, bool]]:
    """The source cut into consecutive (start, end, kept) frame spans, ending with the unused tail.

    Touching ranges are merged (the output is the same, with fewer filters).
    """
    if not timeline.ranges:
        raise ValueError("timeline keeps no frames: nothing to render")
    spans: list[tuple[int, int, bool]] = []
    position = 0
    for r in timeline.ranges:
        # The source is decoded once, front to back, so ranges must be ascending and disjoint.
        if r.start < position:
            raise ValueError(f"ranges must be ascending and disjoint; [{r.start}, {r.end}) is not")
        if r.start > position:
            spans.append((position, r.start, False))
        if spans and spans[-1][2] and spans[-1][1] == r.start:
            spans[-1] = (spans[-1][0], r.end, True)
        else:
            spans.append((r.start, r.end, True))
        position = r.end
    spans.append((position, -1, False))
    return spans


def _cut(
    source: str, splitter: str, points: list[int], spans: list[tuple[int, int, bool]], kind: str
) -> tuple[list[str], list[str]]:
    """Chains splitting `source` at `points` into one branch per span; returns them and kept labels.

    `kind` is "v" or "a": kept spans restart at time 0 (concat expects that), others are discarded.
    """
    outs = "".join(f"[{kind}s{i}]" for i in range(len(spans)))
    chains = [f"{source},{splitter}={'|'.join(map(str, points))}{outs}"]
    kept: list[str] = []
    reset, sink = ("setpts", "nullsink") if kind == "v" else ("asetpts", "anullsink")
    for i, (_start, _end, keep) in enumerate(spans):
        if keep:
            chains.append(f"[{kind}s{i}]{reset}=PTS-STARTPTS[{kind}{len(kept)}]")
            kept.append(f"[{kind}{len(kept)}]")
        else:
            chains.append(f"[{kind}s{i}]{sink}")
    return chains, kept


def _audio_prefix(profile: EditProfile) -> str:
    # async=1:first_pts=0 pads or trims the start (and fills gaps) so sample k is at time k/rate,
    # the time base of the video frames; both passes share this so they measure the same signal.
    return f"aresample={profile.audio_rate}:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo"


def _audio_cut(timeline: Timeline, profile: EditProfile) -> tuple[list[str], list[str]]:
    """Chains from [0:a:0] to one label per kept span, cut at the samples under the frame cuts."""
    spans = segments(timeline)
    fps, rate = timeline.fps_exact, profile.audio_rate
    points = [sample_at(start, fps, rate) for start, _end, _keep in spans[1:]]
    return _cut(f"[0:a:0]{_audio_prefix(profile)}", "asegment=samples", points, spans, "a")


def container_for(output: str | Path) -> str:
    """ffmpeg's muxer for `output`'s extension (`names.OUTPUT_CONTAINERS`); `BadRequest` for others."""
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_CONTAINERS:
        raise BadRequest(
            f"{Path(output).name}: {suffix or 'no extension'} is not a video container this edit writes; "
            f"name it {', '.join(OUTPUT_CONTAINERS)}"
        )
    return OUTPUT_CONTAINERS[suffix]


def needs_limiter(profile: EditProfile, loudness: LoudnessMeasurement | None) -> bool:
    """True when the gain to the target would lift the true peak past the profile's ceiling."""
    if loudness is None or loudness.is_silent:
        return False
    gain = profile.loudness_lufs - loudness.input_i
    return not math.isfinite(loudness.input_tp) or loudness.input_tp + gain > profile.true_peak_dbtp


def _gain_chain(profile: EditProfile, loudness: LoudnessMeasurement, makeup_db: float = 0.0) -> str:
    """The measured gain to the target loudness, a limiter if it would lift peaks past the ceiling,
    and the make-up gain (with the limiter again) for what that limiter took."""
    gain = profile.loudness_lufs - loudness.input_i
    chain = f"volume={gain:.2f}dB"
    if needs_limiter(profile, loudness):
        limit = 10 ** ((profile.true_peak_dbtp - LIMITER_MARGIN_DB) / 20)
        # level=false: alimiter otherwise rescales the output to its limit; latency: it delays the
        # audio by its look-ahead unless told to compensate, which would shift it against the video.
        limiter = f"alimiter=limit={limit:.4f}:attack=5:release=50:level=false:latency=true"
        chain += f",{limiter}" + (f",volume={makeup_db:.2f}dB,{limiter}" if makeup_db else "")
    return chain


def _loudness_gain(profile: EditProfile, loudness: LoudnessMeasurement | None, makeup_db: float = 0.0) -> str:
    """The gain chain (`_gain_chain`), then the delivery format."""
    # Pinning the final format matters: with only `aresample` before the encoder, ffmpeg 5.1 fails
    # to negotiate a channel layout for some inputs (44.1 kHz mono AAC).
    deliver = (
        f"aresample={profile.audio_rate},"
        f"aformat=sample_fmts=fltp:sample_rates={profile.audio_rate}:channel_layouts=stereo"
    )
    if loudness is None or loudness.is_silent:
        return deliver
    return f"{_gain_chain(profile, loudness, makeup_db)},{deliver}"


def filter_graph(
    timeline: Timeline,
    profile: EditProfile,
    loudness: LoudnessMeasurement | None,
    crop_file: Path | None = None,
    makeup_db: float = 0.0,
) -> str:
    """The render's filter graph, with outputs [vout] and (when the timeline has audio) [aout].

    `crop_file` is where `crop_commands(timeline)` is written; needed only when the crop moves.
    `makeup_db`: gain after the limiter (`make_up`).
    """
    spans = segments(timeline)
    fps = timeline.fps_exact
    width, height = timeline.output_width, timeline.output_height
    # A timeline planned for another profile would be stretched: refuse rather than distort (a size
    # asked for by height is of the aspect up to its even rounding).
    aw, ah = profile.aspect or (width, height)
    if abs(width * ah / (height * aw) - 1) > ASPECT_TOLERANCE:
        raise ValueError(
            f"the timeline's {width}x{height} output does not have the {profile.name} profile's aspect {aw}:{ah}"
        )

    # setpts=N: frame N is at exactly N/fps whatever the container's start time, which is what
    # the crop commands' times assume.
    video = f"[0:v:0]fps={timeline.fps},setpts=N"
    positions = crop_positions(timeline)
    if positions:
        crop_w, crop_h = _crop_geometry(timeline) or (0, 0)
        # A crop planned for another profile would be stretched: refuse rather than distort.
        if abs(crop_w * height / (crop_h * width) - 1) > ASPECT_TOLERANCE:
            raise ValueError(f"crop {crop_w}x{crop_h} does not have the {width}x{height} output's aspect")
        _, x0, y0 = positions[0]
        if len(positions) > 1:
            if crop_file is None:
                raise ValueError("a moving crop needs crop_file for its sendcmd script")
            video += f",sendcmd=f={_escape_graph_value(str(crop_file))}"
        video += f",crop=w={crop_w}:h={crop_h}:x={x0}:y={y0}"
        fit = f"scale={width}:{height}:flags=lanczos"
    elif profile.reframes:
        # A reframing profile given a timeline without a crop: letterbox rather than distort.
        fit = (
            f"scale={width}:{height}:flags=lanczos:force_original_aspect_ratio=decrease:force_divisible_by=2,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2"
        )
    else:
        fit = f"scale={width}:{height}:flags=lanczos"
    chains, video_kept = _cut(video, "segment=frames", [start for start, _, _ in spans[1:]], spans, "v")
    n = len(video_kept)
    if timeline.has_audio:
        audio_chains, audio_kept = _audio_cut(timeline, profile)
        chains += audio_chains
        pads = "".join(v + a for v, a in zip(video_kept, audio_kept, strict=True))
        chains.append(f"{pads}concat=n={n}:v=1:a=1[vc][ac]")
    else:
        chains.append("".join(video_kept) + f"concat=n={n}:v=1:a=0[vc]")
    # concat estimates a segment's length from its frames (zero for one frame); rewriting the
    # timestamps as frame N at N/fps makes the output exactly constant-rate with no dup or drop.
    # A frame rate of its own: frames dropped or repeated to it (before scaling: no work on dropped ones).
    rate = f"fps={timeline.output_fps}," if timeline.output_fps else ""
    chains.append(f"[vc]settb={fps.denominator}/{fps.numerator},setpts=N,{rate}{fit},setsar=1,format=yuv420p[vout]")
    if timeline.has_audio:
        chains.append(f"[ac]{_loudness_gain(profile, loudness, makeup_db)}[aout]")
    return ";\n".join(chains)


def _input_window(timeline: Timeline) -> list[str]:
    """Input option that stops reading the source a little after the last kept frame."""
    last_end = max(r.end for r in timeline.ranges)
    return ["-t", f"{float(last_end / timeline.fps_exact) + READ_MARGIN_S:.6f}"]


def render_command(
    timeline: Timeline,
    output: Path,
    profile: EditProfile,
    loudness: LoudnessMeasurement | None,
    work_dir: Path | None = None,
    container: str | None = None,
    makeup_db: float = 0.0,
) -> list[str]:
    """The ffmpeg command that renders `timeline` to `output`, as `container` (an ffmpeg muxer;
    default: the one `output`'s extension names, `container_for`).

    Pure: files it refers to in `work_dir` (the crop script, and the graph when too long for
    one argument) are what `write_work_files` writes there.
    """
    container = container or container_for(output)
    # The index first, so a player starts before the whole file is read (Matroska's cues need no flag).
    mux_args = ["-movflags", "+faststart"] if container in ("mp4", "mov") else []
    crop_file = work_dir / CROP_COMMANDS_FILE if work_dir is not None else None
    graph = filter_graph(timeline, profile, loudness, crop_file, makeup_db)
    if len(graph) <= MAX_INLINE_GRAPH:
        graph_args = ["-filter_complex", graph]
    elif work_dir is not None:
        graph_args = ["-filter_complex_script", str(work_dir / GRAPH_FILE)]
    else:
        raise ValueError(f"filter graph of {len(graph)} characters needs a work_dir for its script")
    audio_args = (
        ["-map", "[aout]", "-c:a", "aac", "-b:a", profile.audio_bitrate, "-ar", str(profile.audio_rate)]
        if timeline.has_audio
        else ["-an"]
    )
    return [
        ffmpeg_io.FFMPEG, *ffmpeg_io.LOG_ARGS, "-y",
        *_input_window(timeline), *ffmpeg_io.input_args(timeline.source),
        *graph_args,
        "-map", "[vout]", "-c:v", profile.video_codec, "-preset", profile.preset, "-crf", str(profile.crf),
        "-pix_fmt", "yuv420p", "-fps_mode", "passthrough",
        *audio_args,
        # Chapters and source metadata describe the uncut source; rotation is already applied.
        "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn",
        *mux_args, "-f", container, ffmpeg_io.output_arg(output),
    ]  # fmt: skip


def write_work_files(
    timeline: Timeline,
    profile: EditProfile,
    loudness: LoudnessMeasurement | None,
    work_dir: Path,
    makeup_db: float = 0.0,
) -> None:
    """Write the files `render_command(..., work_dir=work_dir)` refers to."""
    crop_file = work_dir / CROP_COMMANDS_FILE
    crop_file.write_text(crop_commands(timeline), encoding="utf-8")
    graph = filter_graph(timeline, profile, loudness, crop_file, makeup_db)
    if len(graph) > MAX_INLINE_GRAPH:
        (work_dir / GRAPH_FILE).write_text(graph, encoding="utf-8")


# --- running ffmpeg --------------------------------------------------------------------------------


def _measure_command(timeline: Timeline, profile: EditProfile, script: Path | None, gain: str = "") -> list[str]:
    """The audio-only pass measuring the kept audio (after the `gain` chain, when given)."""
    chains, kept = _audio_cut(timeline, profile)
    n = len(kept)
    graph = ";\n".join(
        [
            *chains,
            "".join(kept) + f"concat=n={n}:v=0:a=1,{gain + ',' if gain else ''}"
            # framelog=verbose: the per-frame lines stay out of the info log, the summary does not.
            "ebur128=peak=true:framelog=verbose[aout]",
        ]
    )
    if len(graph) <= MAX_INLINE_GRAPH:
        graph_args = ["-filter_complex", graph]
    elif script is not None:
        script.write_text(graph, encoding="utf-8")
        graph_args = ["-filter_complex_script", str(script)]
    else:
        raise ValueError(f"filter graph of {len(graph)} characters needs a script file")
    # ebur128 prints its summary at the info level, so this pass cannot use LOG_ARGS' "error".
    return [
        ffmpeg_io.FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "info",
        *_input_window(timeline), *ffmpeg_io.input_args(timeline.source),
        *graph_args, "-map", "[aout]", "-vn", "-sn", "-dn", "-f", "null", "-",
    ]  # fmt: skip


def _run_keeping_stderr(
    args: list[str], total_s: float, on_progress: Callable[[float], None] | None, media: str | Path
) -> str:
    """Like `ffmpeg_io.run_with_progress`, but returns stderr, where ebur128 prints its result."""
    cmd = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, **ffmpeg_io.CHILD
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        err_chunks: list[str] = []
        drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        drain.start()
        ffmpeg_io.parse_progress(iter(proc.stdout.readline, ""), total_s, on_progress or (lambda _f: None))
        proc.wait()
        drain.join()
    stderr = "".join(err_chunks)
    if proc.returncode != 0:
        if err := ffmpeg_io.media_error_from_stderr(stderr, media):
            raise err
        raise FFmpegFailed(cmd, proc.returncode, stderr)
    return stderr


def parse_ebur128_summary(stderr: str, target_lufs: float) -> LoudnessMeasurement:
    """The last `ebur128` summary in ffmpeg's log (integrated loudness, its gate, range, true peak).

    A programme with no 400 ms block above the absolute gate (silence, or shorter than a block)
    reads -70 LUFS there: its integrated loudness is -inf, and nothing is gained.
    """
    at = stderr.rfind("Summary:")
    if at < 0:
        raise FFmpegFailed([], 0, "ebur128 printed no summary\n" + stderr[-2000:])
    summary = stderr[at:]

    def value(key: str) -> float:
        # The first match: the integrated loudness' threshold comes before the range's.
        found = re.search(rf"{key}:\s+(-?[\d.]+|-inf)", summary)
        if found is None:
            raise FFmpegFailed([], 0, f"ebur128's summary has no {key}\n" + summary[-2000:])
        return float(found.group(1))

    integrated = value("I")
    if integrated <= SILENCE_LUFS:
        integrated = -math.inf
    return LoudnessMeasurement(
        input_i=integrated,
        input_tp=value("Peak"),
        input_lra=value("LRA"),
        input_thresh=value("Threshold"),
        target_offset=target_lufs - integrated if math.isfinite(integrated) else 0.0,
    )


def _check_source(timeline: Timeline) -> None:
    source = Path(timeline.source)
    if not source.is_file():
        raise CorruptMedia(f"{source.name}: no such file")


def measure_loudness(
    timeline: Timeline,
    profile: EditProfile | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> LoudnessMeasurement | None:
    """First pass: loudness of the audio the render will keep (audio only, same cut); None without audio.

    `profile` sets the target the offset is reported against and the rate (default: -14 LUFS,
    48 kHz, as every built-in profile).
    """
    if not timeline.has_audio:
        return None
    _check_source(timeline)
    segments(timeline)
    profile = profile or EditProfile(name="measure", aspect=None, width=None, height=None)
    return _measure(timeline, profile, on_progress)


def _measure(
    timeline: Timeline, profile: EditProfile, on_progress: Callable[[float], None] | None = None, gain: str = ""
) -> LoudnessMeasurement:
    with tempfiles.temp_dir("loudness") as tmp:
        cmd = _measure_command(timeline, profile, Path(tmp) / GRAPH_FILE, gain)
        stderr = _run_keeping_stderr(cmd, timeline.output_duration, on_progress, media=timeline.source)
    return parse_ebur128_summary(stderr, profile.loudness_lufs)


def make_up(
    timeline: Timeline, profile: EditProfile, loudness: LoudnessMeasurement | None
) -> tuple[float, float | None]:
    """The gain (dB) after the limiter that brings a short, limited edit back to its target (0 when
    no limiter runs or the edit is longer than `MAKEUP_MAX_S`, see there), and the loudness (LUFS)
    it measured with that gain: None unless its last pass measured the gain it returns."""
    if loudness is None or not needs_limiter(profile, loudness) or timeline.output_duration > MAKEUP_MAX_S:
        return 0.0, None
    makeup = 0.0
    for _ in range(MAKEUP_PASSES):
        after = _measure(timeline, profile, gain=_gain_chain(profile, loudness, makeup)).input_i
        miss = profile.loudness_lufs - after
        if not math.isfinite(miss):
            return makeup, None
        if abs(miss) <= MAKEUP_TOLERANCE_LU:
            return makeup, after
        # The limiter takes part of every step back, so the loudness comes up from below.
        makeup = max(0.0, makeup + miss)
    return makeup, None


class _Monotonic:
    """Maps a stage's 0..1 progress into [low, high] of the whole and never reports going back."""

    def __init__(self, callback: Callable[[float], None] | None) -> None:
        self.callback, self.last = callback, -1.0

    def stage(self, low: float, high: float) -> Callable[[float], None]:
        return lambda fraction: self.report(low + (high - low) * fraction)

    def report(self, value: float) -> None:
        if self.callback is not None and value > self.last:
            self.last = value
            self.callback(value)


def render(
    timeline: Timeline,
    output: Path,
    profile: EditProfile,
    on_progress: Callable[[float], None] | None = None,
) -> RenderResult:
    """Render `timeline` to `output` (H.264 + AAC, loudness-normalised; MP4, MOV or Matroska by
    its extension) atomically.

    `output` appears only once complete; on any failure no partial file is left and an existing
    `output` is untouched. `on_progress` gets 0..1 and ends at 1.0 after the file is in place.
    """
    started = time.monotonic()
    output = Path(output)
    container = container_for(output)
    _check_source(timeline)
    progress = _Monotonic(on_progress)
    progress.report(0.0)
    # A timeline planned from an analysis that kept R128's ingredients carries its measurement already.
    measured = timeline.loudness is not None or not timeline.has_audio
    loudness = (
        timeline.loudness if measured else measure_loudness(timeline, profile, progress.stage(0.0, MEASURE_SHARE))
    )
    encode_from = 0.0 if measured else MEASURE_SHARE
    makeup_db, delivered_lufs = make_up(timeline, profile, loudness)

    output.parent.mkdir(parents=True, exist_ok=True)
    # What a killed render left here or in the temp dir (dead owners, over an hour old only).
    tempfiles.sweep_partials(output.parent)
    tempfiles.sweep_temp_dirs()
    # Hidden name in the same directory: the rename is atomic and upload sensors skip dot files.
    partial = tempfiles.partial_path(output)
    with tempfiles.temp_dir("render") as tmp:
        work_dir = Path(tmp)
        write_work_files(timeline, profile, loudness, work_dir, makeup_db)
        cmd = render_command(
            timeline, partial, profile, loudness, work_dir=work_dir, container=container, makeup_db=makeup_db
        )
        try:
            # The last 1% is kept for the rename, so 1.0 means the file is really there.
            ffmpeg_io.run_with_progress(
                cmd, timeline.output_duration, progress.stage(encode_from, 0.99), media=timeline.source
            )
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    duration = probe(output).duration
    progress.report(1.0)
    return RenderResult(
        output=output,
        command=cmd,
        output_duration=duration,
        loudness=loudness,
        limited=needs_limiter(profile, loudness),
        makeup_db=makeup_db,
        delivered_lufs=delivered_lufs,
        wall_seconds=time.monotonic() - started,
    )
