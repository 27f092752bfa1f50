"""The render stage, one asset chain per edit profile: `<profile>/crop_path` -> `edit_timeline` ->
`render` -> `previews`, `timeline_exports`, `edit_report`.

Publishing: every deliverable is written under the run's staging folder
(``staging/<run_id>/<video_id>/<profile>/``), the render checks measure the staged video, and
`edit_report`, the last step, promotes the whole set to ``renders/<video_id>/<profile>/`` at
once (the video last). A failed check skips it, a crash never reaches it: either way the published
set stays the old one, whole. A run that materializes only part of the chain publishes what it
made when it is safe: companions right away, the video once its blocking checks passed.

Why one chain per profile rather than a profile partition dimension: every asset stays on the
one `videos` partitioning, so a single run (and a single backfill) covers a whole video; a new
profile for old videos is a backfill of that profile's group alone, which loads the stored
analysis and never re-runs it; and the UI shows each deliverable's lineage as its own group.
"""

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from ..engine.config import EditProfile, EncodeSettings, OutputSettings, ReframeSettings
from ..engine.exports import export_all
from ..engine.pipeline import build_timeline, draw_previews, plan_crop
from ..engine.reframe import mode_per_shot
from ..engine.render import RenderResult, render
from ..engine.tables import speech_ranges, speech_summary, table_shots
from ..engine.tempfiles import temp_dir
from ..engine.timeline import Timeline
from ..executors import RENDER_OP_TAGS
from ..models import EditReport, FileSet, RenderOutput, SourceVideo
from ..names import (
    EDITOR_EXPORTS,
    EXPORT_STEM,
    RENDER_NAME,
    REPORT_NAME,
    THUMBNAIL_NAME,
    TIMELINE_PNG_NAME,
    render_prefix,
    staged_render_prefix,
)
from ..partitions import videos
from ..resources import JSON_IO_MANAGER_KEY, PARQUET_IO_MANAGER_KEY, MediaStore
from . import links
from .config import EncodeConfig, OutputConfig, ReframeConfig, settings_of
from .ingest import IO_RETRY

RENDER_POOL = "render"
# Inputs from the shared analysis stage, named explicitly: these assets live under a profile prefix.
UPSTREAM = {
    name: dg.AssetIn(dg.AssetKey(name)) for name in ("source_video", "media_analysis", "speech_segments", "shots")
}


def report_publishes(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, profile: str) -> bool:
    """True if this run's `<profile>/edit_report` will promote the deliverables it staged."""
    report = dg.AssetKey([profile, "edit_report"])
    # The run's subset when launched with one, else the assets its job (possibly a subset) executes.
    selected = context.run.asset_selection or context.job_def.asset_layer.executable_asset_keys
    return report in selected


def stage(
    context: dg.AssetExecutionContext, store: MediaStore, video_id: str, profile: str, files: dict[str, Path]
) -> FileSet:
    """Stage `files` ({kind: local file}) for publishing; the returned keys and URIs are the published ones.

    Published by `edit_report` with the rest of the set, or right away in a run without it (their
    inputs are verified already: a render only flows on once its blocking checks passed).
    """
    staged = staged_render_prefix(context.run.run_id, video_id, profile)
    final = render_prefix(video_id, profile)
    for path in files.values():
        store.put_file(path, staged + path.name)
    if not report_publishes(context, profile):
        store.promote(staged, final, names=[path.name for path in files.values()])
    keys = {kind: final + path.name for kind, path in files.items()}
    return FileSet(keys=keys, uris={kind: store.uri(key) for kind, key in keys.items()})


def _key(profile: EditProfile, name: str) -> dg.AssetKey:
    return dg.AssetKey([profile.name, name])


def _common(profile: EditProfile, io_manager_key: str, kinds: set[str]) -> dict:
    return {
        "key_prefix": [profile.name],
        "group_name": profile.name,
        "partitions_def": videos,
        "io_manager_key": io_manager_key,
        "kinds": kinds,
        "backfill_policy": dg.BackfillPolicy.multi_run(1),
    }


def render_metadata(
    video_id: str, profile: str, timeline: Timeline, result: RenderResult, wall_s: float, *, video: str, staged: str
) -> dict[str, Any]:
    """What the UI shows of a render, for a person: a summary in rounded numbers with units, the
    thumbnail and the timeline picture inline, links that open (`links.py`), the ffmpeg command
    folded away. `video` stays a path entry (`autoedit status` and `fetch` read it), and
    `output_s`/`render_s` stay numbers (the gateway's /metrics sums them; the UI plots them)."""
    kept = timeline.output_duration / timeline.source_duration if timeline.source_duration else 1.0
    summary = (
        f"{result.output_duration:.1f} s kept of {timeline.source_duration:.1f} s ({kept:.0%}), "
        f"{timeline.output_width}x{timeline.output_height} at {float(timeline.fps_exact):.3g} fps, "
        f"rendered in {wall_s:.1f} s"
    )
    if result.loudness is not None:
        summary += f"; audio measured {result.loudness.input_i:.1f} LUFS before normalising"
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.text(summary),
        "thumbnail": links.picture(f"thumbnail of {video_id}", video_id, profile, THUMBNAIL_NAME),
        "timeline": links.picture(f"timeline of {video_id}", video_id, profile, TIMELINE_PNG_NAME),
        "open": dg.MetadataValue.url(links.media_url(video_id, profile, RENDER_NAME)),
        "video": dg.MetadataValue.path(video),
        "staged": dg.MetadataValue.path(staged),
        "output_s": round(result.output_duration, 2),
        "render_s": round(wall_s, 1),
        "ffmpeg_command": links.folded_command(result.command),
    }
    return metadata


def build_profile_assets(profile: EditProfile) -> list[dg.AssetsDefinition]:
    """The render-stage assets of one profile, keyed `<profile>/<name>` and grouped by profile."""
    crop = [_crop_path_asset(profile)] if profile.reframes else []
    return [
        *crop,
        _timeline_asset(profile),
        _render_asset(profile),
        _previews_asset(profile),
        _exports_asset(profile),
        _report_asset(profile),
    ]


def _crop_path_asset(profile: EditProfile) -> dg.AssetsDefinition:
    @dg.asset(
        name="crop_path",
        ins={k: UPSTREAM[k] for k in ("source_video", "media_analysis", "shots")},
        **_common(profile, PARQUET_IO_MANAGER_KEY, {"polars"}),
    )
    def crop_path(
        context: dg.AssetExecutionContext,
        config: ReframeConfig,
        source_video: SourceVideo,
        media_analysis: pl.DataFrame,
        shots: pl.DataFrame,
    ) -> pl.DataFrame:
        """Per-frame crop window that follows the subject (stationary, panning or tracking per shot)."""
        settings = settings_of(config, ReframeSettings)
        plan = plan_crop(media_analysis, source_video.info, table_shots(shots), profile, settings)
        assert plan is not None  # built for reframing profiles only
        modes = mode_per_shot(plan)
        context.add_output_metadata(
            {
                "crop": f"{plan['w'][0]}x{plan['h'][0]}" if plan.height else "none",
                "modes": dg.MetadataValue.json(
                    {m: int((modes["mode"] == m).sum()) for m in ("stationary", "panning", "tracking")}
                ),
            }
        )
        return plan

    return crop_path


def _timeline_asset(profile: EditProfile) -> dg.AssetsDefinition:
    def make_timeline(
        context: dg.AssetExecutionContext,
        config: OutputConfig,
        source_video: SourceVideo,
        media_analysis: pl.DataFrame,
        speech_segments: pl.DataFrame,
        crop_path: pl.DataFrame | None,
    ) -> Timeline:
        timeline = build_timeline(
            source_video.info, media_analysis.height, speech_ranges(speech_segments), profile, crop_path,
            uri=source_video.uri, frames=media_analysis, output=settings_of(config, OutputSettings),
        )  # fmt: skip
        context.add_output_metadata(
            {
                "kept_ranges": len(timeline.ranges),
                "output_s": round(timeline.output_duration, 2),
                "kept_ratio": round(timeline.output_duration / timeline.source_duration, 3)
                if timeline.frame_count
                else 1.0,
                "output_size": f"{timeline.output_width}x{timeline.output_height}",
                "output_fps": float(timeline.output_fps_exact),
                "crop_keys": len(timeline.crop),
            }
        )
        return timeline

    common = _common(profile, JSON_IO_MANAGER_KEY, {"pydantic"})
    ins = {k: UPSTREAM[k] for k in ("source_video", "media_analysis", "speech_segments")}
    if not profile.reframes:

        @dg.asset(name="edit_timeline", ins=ins, **common)
        def edit_timeline(
            context: dg.AssetExecutionContext,
            config: OutputConfig,
            source_video: SourceVideo,
            media_analysis: pl.DataFrame,
            speech_segments: pl.DataFrame,
        ) -> Timeline:
            """The edit: kept source ranges and output size of this profile (no reframing)."""
            return make_timeline(context, config, source_video, media_analysis, speech_segments, None)

        return edit_timeline

    @dg.asset(name="edit_timeline", ins={**ins, "crop_path": dg.AssetIn(_key(profile, "crop_path"))}, **common)
    def edit_reframed_timeline(
        context: dg.AssetExecutionContext,
        config: OutputConfig,
        source_video: SourceVideo,
        media_analysis: pl.DataFrame,
        speech_segments: pl.DataFrame,
        crop_path: pl.DataFrame,
    ) -> Timeline:
        """The edit: kept source ranges, crop keyframes and output size of this profile."""
        return make_timeline(context, config, source_video, media_analysis, speech_segments, crop_path)

    return edit_reframed_timeline


def _render_asset(profile: EditProfile) -> dg.AssetsDefinition:
    name = profile.name

    @dg.asset(
        name="render",
        ins={"source_video": UPSTREAM["source_video"], "edit_timeline": dg.AssetIn(_key(profile, "edit_timeline"))},
        pool=RENDER_POOL,
        op_tags=RENDER_OP_TAGS,  # with the Celery executor, renders go to the dedicated render queue
        retry_policy=IO_RETRY,
        **_common(profile, JSON_IO_MANAGER_KEY, {"ffmpeg", "video"}),
    )
    def render_asset(
        context: dg.AssetExecutionContext,
        config: EncodeConfig,
        store: MediaStore,
        source_video: SourceVideo,
        edit_timeline: Timeline,
    ) -> RenderOutput:
        """The finished video: cut, reframed, loudness-normalised H.264/AAC (`final.mp4`)."""
        key = render_prefix(source_video.video_id, name) + RENDER_NAME
        # Staged, not published: the checks measure this file, edit_report promotes it.
        staged_key = staged_render_prefix(context.run.run_id, source_video.video_id, name) + RENDER_NAME
        started = time.perf_counter()
        # Named after this process, so a sweep finds the partial render a kill -9 leaves in it.
        with store.local_copy(source_video.upload_key) as src, temp_dir("render") as tmp:
            local = edit_timeline.model_copy(update={"source": str(src)})
            result = render(local, Path(tmp) / RENDER_NAME, settings_of(config, EncodeSettings).apply(profile))
            store.put_file(result.output, staged_key)
        uri = store.uri(key)
        context.add_output_metadata(
            render_metadata(
                source_video.video_id, name, edit_timeline, result, time.perf_counter() - started,
                video=uri, staged=store.uri(staged_key),
            )
        )  # fmt: skip
        return RenderOutput(
            video_id=source_video.video_id,
            profile=name,
            key=key,
            uri=uri,
            staged_key=staged_key,
            output_duration=result.output_duration,
            command=result.command,
            integrated_lufs_before=result.loudness.input_i if result.loudness else None,
            render_seconds=result.wall_seconds,
        )

    return render_asset


def _previews_asset(profile: EditProfile) -> dg.AssetsDefinition:
    @dg.asset(
        name="previews",
        ins={
            "render": dg.AssetIn(_key(profile, "render")),
            "edit_timeline": dg.AssetIn(_key(profile, "edit_timeline")),
            "media_analysis": UPSTREAM["media_analysis"],
            "shots": UPSTREAM["shots"],
        },
        retry_policy=IO_RETRY,
        **_common(profile, JSON_IO_MANAGER_KEY, {"opencv"}),
    )
    def previews(
        context: dg.AssetExecutionContext,
        store: MediaStore,
        render: RenderOutput,
        edit_timeline: Timeline,
        media_analysis: pl.DataFrame,
        shots: pl.DataFrame,
    ) -> FileSet:
        """A poster thumbnail of the render and a timeline PNG (loudness, cuts, shots, crop path)."""
        with tempfile.TemporaryDirectory() as tmp, store.local_copy(render.key_for_run(context.run.run_id)) as video:
            drawn = draw_previews(Path(video), media_analysis, edit_timeline, table_shots(shots), Path(tmp))
            files = stage(context, store, render.video_id, profile.name, drawn)
        pictures = {kind: path.name for kind, path in drawn.items()}
        context.add_output_metadata(
            {
                **{
                    f"{kind}_image": links.picture(kind, render.video_id, profile.name, name)
                    for kind, name in pictures.items()
                },
                **{kind: dg.MetadataValue.path(uri) for kind, uri in files.uris.items()},
            }
        )
        return files

    return previews


def _exports_asset(profile: EditProfile) -> dg.AssetsDefinition:
    @dg.asset(
        name="timeline_exports",
        ins={"source_video": UPSTREAM["source_video"], "edit_timeline": dg.AssetIn(_key(profile, "edit_timeline"))},
        retry_policy=IO_RETRY,
        **_common(profile, JSON_IO_MANAGER_KEY, {"opentimelineio"}),
    )
    def timeline_exports(
        context: dg.AssetExecutionContext, store: MediaStore, source_video: SourceVideo, edit_timeline: Timeline
    ) -> FileSet:
        """The cut list for editors: FCPXML, FCP 7 XML, CMX3600 EDL and OpenTimelineIO JSON."""
        with tempfile.TemporaryDirectory() as tmp:
            written = export_all(edit_timeline, list(EDITOR_EXPORTS), Path(tmp) / EXPORT_STEM)
            files = stage(context, store, source_video.video_id, profile.name, written)
        context.add_output_metadata(
            {
                **{fmt: dg.MetadataValue.path(uri) for fmt, uri in files.uris.items()},
                **{
                    f"open_{fmt}": dg.MetadataValue.url(links.media_url(source_video.video_id, profile.name, path.name))
                    for fmt, path in written.items()
                },
            }
        )
        return files

    return timeline_exports


def _report_asset(profile: EditProfile) -> dg.AssetsDefinition:
    name = profile.name

    @dg.asset(
        name="edit_report",
        ins={
            "source_video": UPSTREAM["source_video"],
            "shots": UPSTREAM["shots"],
            "speech_segments": UPSTREAM["speech_segments"],
            **{k: dg.AssetIn(_key(profile, k)) for k in ("render", "edit_timeline", "previews", "timeline_exports")},
        },
        **_common(profile, JSON_IO_MANAGER_KEY, {"pydantic"}),
    )
    def edit_report(
        context: dg.AssetExecutionContext,
        store: MediaStore,
        source_video: SourceVideo,
        shots: pl.DataFrame,
        speech_segments: pl.DataFrame,
        edit_timeline: Timeline,
        render: RenderOutput,
        previews: FileSet,
        timeline_exports: FileSet,
    ) -> EditReport:
        """Per-video numbers of this edit: durations, time removed, speech found, shots, output links."""
        boundaries = table_shots(shots)
        speech = speech_summary(speech_segments)
        report = EditReport(
            video_id=source_video.video_id,
            profile=name,
            upload_key=source_video.upload_key,
            sha256=source_video.sha256,
            source_duration=edit_timeline.source_duration,
            output_duration=edit_timeline.output_duration,
            seconds_removed=edit_timeline.source_duration - edit_timeline.output_duration,
            kept_ratio=edit_timeline.output_duration / edit_timeline.source_duration
            if edit_timeline.source_duration
            else 1.0,
            kept_ranges=len(edit_timeline.ranges),
            shots=len(boundaries) + 1,
            cuts=sum(b.kind == "cut" for b in boundaries),
            gradual_transitions=sum(b.kind == "gradual" for b in boundaries),
            detector=speech.detector if speech else None,
            speech_found_s=speech.speech_s if speech else None,
            speech_notes=speech.notes if speech else [],
            render_uri=render.uri,
            exports=timeline_exports.uris,
            previews=previews.uris,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        # Beside the render too: the catalog reads reports from renders/, which retention keeps.
        staged = staged_render_prefix(context.run.run_id, source_video.video_id, name)
        store.write_bytes(staged + REPORT_NAME, report.model_dump_json(indent=2).encode())
        # Everything this run staged for the profile, together, the video last. Only reached when
        # the render passed its blocking checks and every companion was written.
        published = store.promote(staged, render_prefix(source_video.video_id, name), last=RENDER_NAME)
        context.add_output_metadata(
            {
                "seconds_removed": round(report.seconds_removed, 2),
                "kept_ratio": round(report.kept_ratio, 3),
                "shots": report.shots,
                "published": dg.MetadataValue.json(published),
            }
        )
        return report

    return edit_report
