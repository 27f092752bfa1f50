"""A whole edit of one file: plan it in a child process, then render, then export.

Analysis and planning need OpenCV, numpy and polars, and leave the process that ran them ~100 MB
larger (a 20-minute source) that Python never returns to the system. The render that follows is
a long ffmpeg run the Python side only waits for, so that memory would sit beside ffmpeg's for
the whole encode. Planning therefore runs in a spawned child that exits before the render
starts: the edit's peak is ffmpeg plus a small Python (bench/RESULTS.md, "scaling and memory").

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
from .config import EditProfile, EditSettings, get_profile
from .render import RenderResult, render
from .timeline import SpeechSummary, Timeline

# Progress messages from the child: at most one per this step of the bar (the analysis reports
# every 50 frames, which would be thousands of messages for a long file).
PROGRESS_STEP = 0.005


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
) -> EditPlan:
    """Analyse `source_path` and plan its edit for `profile` (and draw its timeline, if asked).

    In this process: `edit` runs it in a child (see the module's docstring).
    """
    from .pipeline import analyze_source, build_timeline, plan_crop
    from .previews import timeline_png

    settings = settings or EditSettings()
    source = analyze_source(source_path, settings, on_progress)
    crop_path = plan_crop(source.frames, source.info, source.shots, profile, settings.reframe)
    timeline = build_timeline(
        source.info, source.frames.height, source.speech, profile, crop_path, frames=source.frames
    )
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


class PlanningFailed(RuntimeError):
    """The planning process ended without a plan or an error (killed, out of memory)."""


def _plan_in_child(
    conn: Connection, source: str, profile: EditProfile, settings: EditSettings, png: str | None
) -> None:
    """Child process body: sends ("progress", stage, f)..., then ("plan", json) or ("error", exc, tb)."""
    ffmpeg_io.die_with_parent()
    last: dict[str, float] = {}

    def progress(stage: str, fraction: float) -> None:
        if fraction >= 1.0 or fraction - last.get(stage, -1.0) >= PROGRESS_STEP:
            last[stage] = fraction
            conn.send(("progress", stage, fraction))

    try:
        conn.send(("plan", plan_edit(source, profile, settings, png, progress).model_dump_json()))
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
) -> EditPlan:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_plan_in_child, args=(send, str(source), profile, settings, str(png) if png else None), daemon=True
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
) -> EditResult:
    """Edit `source_path` into `output` for one profile, with optional exports and timeline PNG.

    The exports and the timeline picture appear only when the render succeeded, like `output`.
    """
    settings = settings or EditSettings()
    prof = get_profile(profile) if isinstance(profile, str) else profile
    output = Path(output)
    with tempfiles.temp_dir("plan") as work:
        png_draft = Path(work) / TIMELINE_PNG_NAME if timeline_png_path is not None else None
        plan = _plan_isolated(Path(source_path), prof, settings, png_draft, on_progress)
        timeline = plan.timeline
        started = time.perf_counter()
        result = render(timeline, output, prof, (lambda f: on_progress("render", f)) if on_progress else None)
        timings = {**plan.timings, "render_s": time.perf_counter() - started}
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
    )
