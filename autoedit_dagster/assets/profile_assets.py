"""The render stage, one asset chain per edit profile: `<profile>/crop_path` -> `edit_timeline` ->
`render` -> `previews`, `timeline_exports`, `edit_report`.

Why one chain per profile rather than a profile partition dimension: every asset stays on the
one `videos` partitioning, so a single run (and a single backfill) covers a whole video; a new
profile for old videos is a backfill of that profile's group alone, which loads the stored
analysis and never re-runs it; and the UI shows each deliverable's lineage as its own group.
"""

import base64
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from ..engine.config import EditProfile, ReframeSettings
from ..engine.exports import export_all
from ..engine.pipeline import build_timeline
from ..engine.previews import thumbnail, timeline_png
from ..engine.reframe import mode_per_shot, plan_reframe
from ..engine.render import render
from ..engine.shots import shot_ranges
from ..engine.timeline import Timeline
from ..executors import RENDER_OP_TAGS
from ..models import EditReport, FileSet, RenderOutput, SourceVideo
from ..partitions import videos
from ..resources import JSON_IO_MANAGER_KEY, PARQUET_IO_MANAGER_KEY, MediaStore
from .analysis import table_ranges, table_shots, table_speech_summary
from .config import ReframeConfig, settings_of
from .ingest import IO_RETRY

RENDER_POOL = "render"
# Inputs from the shared analysis stage, named explicitly: these assets live under a profile prefix.
UPSTREAM = {
    name: dg.AssetIn(dg.AssetKey(name)) for name in ("source_video", "media_analysis", "speech_segments", "shots")
}
EXPORT_NAMES = {"fcpxml": "edit.fcpxml", "fcp7": "edit.fcp7.xml", "edl": "edit.edl", "otio": "edit.otio.json"}


def render_prefix(video_id: str, profile: str) -> str:
    return f"renders/{video_id}/{profile}/"


def _common(profile: EditProfile, io_manager_key: str, kinds: set[str]) -> dict:
    return {
        "key_prefix": [profile.name],
        "group_name": profile.name,
        "partitions_def": videos,
        "io_manager_key": io_manager_key,
        "kinds": kinds,
        "backfill_policy": dg.BackfillPolicy.multi_run(1),
    }


def _png_markdown(path: Path) -> dg.MetadataValue:
    # Inline, so the UI shows the picture without access to the store.
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![timeline](data:image/png;base64,{data})")


def build_profile_assets(profile: EditProfile) -> list[dg.AssetsDefinition]:
    """The render-stage assets of one profile, keyed `<profile>/<name>` and grouped by profile."""
    name = profile.name
    assets: list[dg.AssetsDefinition] = []
    crop_key = dg.AssetKey([name, "crop_path"])

    if profile.aspect is not None:
        aspect = profile.aspect

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
            info = source_video.info
            ranges = shot_ranges(table_shots(shots), media_analysis.height)
            plan = plan_reframe(
                media_analysis, info.width, info.height, info.fps_exact, ranges, aspect,
                settings_of(config, ReframeSettings),
            )  # fmt: skip
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

        assets.append(crop_path)

    def make_timeline(
        context: dg.AssetExecutionContext,
        source_video: SourceVideo,
        media_analysis: pl.DataFrame,
        speech_segments: pl.DataFrame,
        crop_path: pl.DataFrame | None,
    ) -> Timeline:
        timeline = build_timeline(
            source_video.info, media_analysis.height, table_ranges(speech_segments), profile, crop_path,
            uri=source_video.uri,
        )  # fmt: skip
        context.add_output_metadata(
            {
                "kept_ranges": len(timeline.ranges),
                "output_s": timeline.output_duration,
                "kept_ratio": timeline.output_duration / timeline.source_duration if timeline.frame_count else 1.0,
                "output_size": f"{timeline.output_width}x{timeline.output_height}",
                "crop_keys": len(timeline.crop),
            }
        )
        return timeline

    timeline_common = _common(profile, JSON_IO_MANAGER_KEY, {"pydantic"})
    timeline_ins = {k: UPSTREAM[k] for k in ("source_video", "media_analysis", "speech_segments")}
    if profile.aspect is not None:

        @dg.asset(name="edit_timeline", ins={**timeline_ins, "crop_path": dg.AssetIn(crop_key)}, **timeline_common)
        def edit_timeline(
            context: dg.AssetExecutionContext,
            source_video: SourceVideo,
            media_analysis: pl.DataFrame,
            speech_segments: pl.DataFrame,
            crop_path: pl.DataFrame,
        ) -> Timeline:
            """The edit: kept source ranges, crop keyframes and output size of this profile."""
            return make_timeline(context, source_video, media_analysis, speech_segments, crop_path)

    else:

        @dg.asset(name="edit_timeline", ins=timeline_ins, **timeline_common)
        def edit_timeline(
            context: dg.AssetExecutionContext,
            source_video: SourceVideo,
            media_analysis: pl.DataFrame,
            speech_segments: pl.DataFrame,
        ) -> Timeline:
            """The edit: kept source ranges and output size of this profile (no reframing)."""
            return make_timeline(context, source_video, media_analysis, speech_segments, None)

    timeline_key = dg.AssetKey([name, "edit_timeline"])

    @dg.asset(
        name="render",
        ins={"source_video": UPSTREAM["source_video"], "edit_timeline": dg.AssetIn(timeline_key)},
        pool=RENDER_POOL,
        op_tags=RENDER_OP_TAGS,  # with the Celery executor, renders go to the dedicated render queue
        retry_policy=IO_RETRY,
        **_common(profile, JSON_IO_MANAGER_KEY, {"ffmpeg", "video"}),
    )
    def render_asset(
        context: dg.AssetExecutionContext, store: MediaStore, source_video: SourceVideo, edit_timeline: Timeline
    ) -> RenderOutput:
        """The finished video: cut, reframed, loudness-normalised H.264/AAC (`final.mp4`)."""
        key = render_prefix(source_video.video_id, name) + "final.mp4"
        started = time.perf_counter()
        with store.local_copy(source_video.upload_key) as src, tempfile.TemporaryDirectory() as tmp:
            local = edit_timeline.model_copy(update={"source": str(src)})
            result = render(local, Path(tmp) / "final.mp4", profile)
            store.put_file(result.output, key)
        uri = store.uri(key)
        context.add_output_metadata(
            {
                "video": dg.MetadataValue.path(uri),
                "output_s": result.output_duration,
                "render_s": time.perf_counter() - started,
                "ffmpeg_command": dg.MetadataValue.text(" ".join(result.command)),
            }
        )
        return RenderOutput(
            video_id=source_video.video_id,
            profile=name,
            key=key,
            uri=uri,
            output_duration=result.output_duration,
            command=result.command,
            integrated_lufs_before=result.loudness.input_i if result.loudness else None,
            render_seconds=result.wall_seconds,
        )

    render_key = dg.AssetKey([name, "render"])

    @dg.asset(
        name="previews",
        ins={
            "render": dg.AssetIn(render_key),
            "edit_timeline": dg.AssetIn(timeline_key),
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
        prefix = render_prefix(render.video_id, name)
        keys = {"thumbnail": prefix + "thumb.jpg", "timeline_png": prefix + "timeline.png"}
        with tempfile.TemporaryDirectory() as tmp, store.local_copy(render.key) as video:
            thumb = thumbnail(Path(video), Path(tmp) / "thumb.jpg")
            frames = [b.frame for b in table_shots(shots)]
            png = timeline_png(media_analysis, edit_timeline, frames, Path(tmp) / "timeline.png")
            store.put_file(thumb, keys["thumbnail"])
            store.put_file(png, keys["timeline_png"])
            context.add_output_metadata({"timeline": _png_markdown(png)})
        uris = {kind: store.uri(key) for kind, key in keys.items()}
        context.add_output_metadata({kind: dg.MetadataValue.path(uri) for kind, uri in uris.items()})
        return FileSet(keys=keys, uris=uris)

    @dg.asset(
        name="timeline_exports",
        ins={"source_video": UPSTREAM["source_video"], "edit_timeline": dg.AssetIn(timeline_key)},
        retry_policy=IO_RETRY,
        **_common(profile, JSON_IO_MANAGER_KEY, {"opentimelineio"}),
    )
    def timeline_exports(
        context: dg.AssetExecutionContext, store: MediaStore, source_video: SourceVideo, edit_timeline: Timeline
    ) -> FileSet:
        """The cut list for editors: FCPXML, FCP 7 XML, CMX3600 EDL and OpenTimelineIO JSON."""
        prefix = render_prefix(source_video.video_id, name)
        keys: dict[str, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            written = export_all(edit_timeline, list(EXPORT_NAMES), Path(tmp) / "edit")
            for fmt, path in written.items():
                keys[fmt] = prefix + EXPORT_NAMES[fmt]
                store.put_file(path, keys[fmt])
        uris = {fmt: store.uri(key) for fmt, key in keys.items()}
        context.add_output_metadata({fmt: dg.MetadataValue.path(uri) for fmt, uri in uris.items()})
        return FileSet(keys=keys, uris=uris)

    @dg.asset(
        name="edit_report",
        ins={
            "source_video": UPSTREAM["source_video"],
            "shots": UPSTREAM["shots"],
            "speech_segments": UPSTREAM["speech_segments"],
            "render": dg.AssetIn(render_key),
            "edit_timeline": dg.AssetIn(timeline_key),
            "previews": dg.AssetIn(dg.AssetKey([name, "previews"])),
            "timeline_exports": dg.AssetIn(dg.AssetKey([name, "timeline_exports"])),
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
        speech = table_speech_summary(speech_segments)
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
        store.write_bytes(render_prefix(source_video.video_id, name) + "report.json",
                          report.model_dump_json(indent=2).encode())  # fmt: skip
        context.add_output_metadata(
            {"seconds_removed": report.seconds_removed, "kept_ratio": report.kept_ratio, "shots": report.shots}
        )
        return report

    return [*assets, edit_timeline, render_asset, previews, timeline_exports, edit_report]
