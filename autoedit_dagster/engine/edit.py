"""A whole edit of one file: probe it, plan it, then render, then export.

The source is probed first, before anything heavy is imported, so ffmpeg starts working at once;
the plan gets that probe and never probes again.

Analysis and planning need OpenCV, numpy and polars, and leave the process that ran them ~100 MB
larger (a 20-minute source) that Python never returns to the system. The render that follows is
a long ffmpeg run the Python side only waits for, so that memory would sit beside ffmpeg's for
the whole encode. For a long source planning therefore runs in a spawned child that exits before
the render starts: the edit's peak is ffmpeg plus a small Python (bench/RESULTS.md, "scaling and
memory"). A short source is planned in this process: a child would cost a second Python start
and its imports, more than the memory it saves.

This module imports nothing heavy itself; keep it that way (a test checks).
"""

import multiprocessing
import shutil
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from pydantic import BaseModel, Field

from autoedit_dagster.names import DEFAULT_PROFILE, TIMELINE_PNG_NAME

from . import ffmpeg_io, tempfiles
from .config import EditProfile, EditSettings, get_profile, output_size
from .media_info import MediaInfo, check_editable, probe
from .render import RenderResult, render
from .timeline import SpeechSummary, Timeline

# Sources up to this long are planned in this process (see the module's docstring).
IN_PROCESS_PLAN_MAX_S = 600.0
# Progress messages from the child: at most one per this step of the bar (the analysis reports
# every 50 frames, which would be thousands of messages for a long file).
PROGRESS_STEP = 0.005
# An output that enlarges the source pixels it shows more than this many times gets a warning.
UPSCALE_WARNING = 3.0


class EditPlan(BaseModel):
    """Everything an edit needs before its render: the timeline and what the analysis found."""

    timeline: Timeline
    shots: int = Field(description="Shots in the source (boundaries + 1).")
    speech: SpeechSummary
    timings: dict[str, float]


def plan_edit(
    source_path: str | Path,
    profile: EditProfile,
    settings: EditSettings | None = None,
    timeline_png_path: str | Path | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    info: MediaInfo | None = None,
) -> EditPlan:
    """Analyse `source_path` (already probed: `info`) and plan its edit for `profile` (and draw
    its timeline, if asked).

    In this process: `edit` runs it in a child for a long source (see the module's docstring).
    """
    from .pipeline import analyze_source, build_timeline, plan_crop
    from .previews import timeline_png

    settings = settings or EditSettings()
    if not profile.reframes:  # the crop is the only reader of the subject columns
        settings = settings.model_copy(update={"analysis": settings.analysis.model_copy(update={"subjects": False})})
    source = analyze_source(source_path, settings, on_progress, info)
    crop_path = plan_crop(source.frames, source.info, source.shots, profile, settings.reframe)
    timeline = build_timeline(
        source.info, source.frames.height, source.speech, profile, crop_path, frames=source.frames,
        output=settings.output,
    )  # fmt: skip
    if timeline_png_path is not None:
        timeline_png(source.frames, timeline, [s.frame for s in source.shots], Path(timeline_png_path))
    return EditPlan(
        timeline=timeline, shots=len(source.shots) + 1, speech=source.speech_summary, timings=source.timings
    )


class EditResult(BaseModel):
    """What `edit` produced, for the CLI's summary."""

    output: str
    profile: str
    source_duration: float
    output_duration: float
    kept_ranges: int
    shots: int
    speech: SpeechSummary
    exports: dict[str, str]
    timeline_png: str | None
    render: RenderResult
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list, description="What the edit could not do as asked.")


class PlanningFailed(RuntimeError):
    """The planning process ended without a plan or an error (killed, out of memory)."""


def _plan_in_child(
    conn: Connection, source: str, profile: EditProfile, settings: EditSettings, png: str | None, info: MediaInfo
) -> None:
    """Child process body: sends ("progress", stage, f)..., then ("plan", json) or ("error", exc, tb)."""
    ffmpeg_io.die_with_parent()
    last: dict[str, float] = {}

    def progress(stage: str, fraction: float) -> None:
        if fraction >= 1.0 or fraction - last.get(stage, -1.0) >= PROGRESS_STEP:
            last[stage] = fraction
            conn.send(("progress", stage, fraction))

    try:
        conn.send(("plan", plan_edit(source, profile, settings, png, progress, info).model_dump_json()))
    except BaseException as exc:  # every failure goes back to the parent
        detail = traceback.format_exc()
        try:
            conn.send(("error", exc, detail))
        except Exception:  # an exception that does not pickle still reaches the parent as text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}"), detail))
    finally:
        conn.close()


def _plan_isolated(
    source: Path,
    profile: EditProfile,
    settings: EditSettings,
    png: Path | None,
    on_progress: Callable[[str, float], None] | None,
    info: MediaInfo,
) -> EditPlan:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_plan_in_child, args=(send, str(source), profile, settings, str(png) if png else None, info), daemon=True
    )
    child.start()
    send.close()  # the child holds the only writing end: EOF means it ended
    try:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                child.join()
                raise PlanningFailed(f"planning process ended without a result (exit code {child.exitcode})") from None
            if message[0] == "progress":
                if on_progress:
                    on_progress(message[1], message[2])
            elif message[0] == "plan":
                return EditPlan.model_validate_json(message[1])
            else:
                _, exc, detail = message
                exc.add_note(f"in the planning process:\n{detail}")
                raise exc
    finally:
        receive.close()
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()


def edit(
    source_path: str | Path,
    output: str | Path,
    profile: str | EditProfile = DEFAULT_PROFILE,
    settings: EditSettings | None = None,
    exports: list[str] | None = None,
    timeline_png_path: str | Path | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    isolate: bool | None = None,
    started_probe: ffmpeg_io.ProbeRun | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> EditResult:
    """Edit `source_path` into `output` for one profile, with optional exports and timeline PNG.

    The exports and the timeline picture appear only when the render succeeded, like `output`.
    `isolate`: plan in a child process; by default only for a source longer than
    `IN_PROCESS_PLAN_MAX_S`. `started_probe`: the source's ffprobe, already running.
    `on_warning` hears each warning when it is known (they are in the result too): a small
    source enlarged many times (after the probe), a loudness target not met (after the render).
    """
    settings = settings or EditSettings()
    prof = settings.encode.apply(get_profile(profile) if isinstance(profile, str) else profile)
    output = Path(output)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if on_warning is not None:
            on_warning(message)

    with tempfiles.temp_dir("plan") as work:
        png_draft = Path(work) / TIMELINE_PNG_NAME if timeline_png_path is not None else None
        info = probe(source_path, settings.limits, started_probe)
        check_editable(info, settings.limits)
        # Before any decode: a size the profile cannot take is refused, a blurry one is said.
        size = output_size(settings.output, prof, info.width, info.height)
        if size.upscale > UPSCALE_WARNING:
            warn(
                f"the {info.width}x{info.height} source is enlarged {size.upscale:.1f}x to {size.width}x{size.height} "
                "(blurry); --no-upscale keeps its own size"
            )
        if isolate if isolate is not None else info.duration > IN_PROCESS_PLAN_MAX_S:
            plan = _plan_isolated(Path(source_path), prof, settings, png_draft, on_progress, info)
        else:
            plan = plan_edit(source_path, prof, settings, png_draft, on_progress, info)
        timeline = plan.timeline
        started = time.perf_counter()
        result = render(timeline, output, prof, (lambda f: on_progress("render", f)) if on_progress else None)
        timings = {**plan.timings, "render_s": time.perf_counter() - started}
        _loudness_warnings(result, output, prof, warn)
        png = Path(shutil.move(png_draft, timeline_png_path)) if png_draft and timeline_png_path else None
    # Imported only when asked for, and after the render: OpenTimelineIO and its adapter plugins.
    written: dict[str, Path] = {}
    if exports:
        from .exports import export_all

        written = export_all(timeline, exports, output.with_suffix(""))
    return EditResult(
        output=str(output),
        profile=prof.name,
        source_duration=timeline.source_duration,
        output_duration=timeline.output_duration,
        kept_ranges=len(timeline.ranges),
        shots=plan.shots,
        speech=plan.speech,
        exports={k: str(v) for k, v in written.items()},
        timeline_png=str(png) if png else None,
        render=result,
        timings=timings,
        warnings=warnings,
    )


def _loudness_warnings(result: RenderResult, output: Path, profile: EditProfile, warn: Callable[[str], None]) -> None:
    """Say when the output is not at its loudness target: silent audio, or peaks the limiter held down.

    A measured gain without a limiter is exact (the same signal, made louder or softer), so the
    output is measured only when the limiter ran, and not even then when the render's make-up
    already measured the chain it rendered (`RenderResult.delivered_lufs`: short edits).
    """
    from .verify import LOUDNESS_TOLERANCE_LU, integrated_loudness

    target = profile.loudness_lufs
    if result.loudness is None:
        return
    if result.loudness.is_silent:
        warn(f"the kept audio is silent or too short to measure: left as it is, not brought to {target:g} LUFS")
        return
    if not result.limited:
        return
    lufs = result.delivered_lufs if result.delivered_lufs is not None else integrated_loudness(output)
    if abs(lufs - target) > LOUDNESS_TOLERANCE_LU:
        warn(
            f"loudness {lufs:.1f} LUFS, not the {target:g} LUFS target: the true-peak limit "
            f"({profile.true_peak_dbtp:g} dBTP) holds its peaks down"
        )
