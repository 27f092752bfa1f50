"""Checks on each profile's `render`, measured on the file that gets published.

In the run that rendered it, that is the staged file: its bytes are what `edit_report` promotes
to `renders/`, and only if these checks pass. Blocking (a bad output must not flow into
previews, exports and the report, nor be published): size and aspect, duration equal to the
timeline's, audio and video within one frame. Warnings: loudness within ±1 LU of the target, a
first frame that is not black.

The check specs carry no partitions, though the render is partitioned per video: Dagster 1.13
computes a partitioned check's per-partition statuses for the asset graph by asking the
instance, video by video, whether each partition exists (`asset_check_state.py`,
`_valid_partition_key`), one query per video per request (37 s at 10,000 videos, bench/ARCHIVE.md).
Each run still checks its own video: the evaluation names the materialization of the run's
partition it checked (Dagster scopes the target to the step's partition), the metadata and a failed
check's description name the video, and the results stay in the run's event log, where
`autoedit status`, the review page and the webhooks read them. So the checks take no Dagster
inputs (an unpartitioned step loading a partitioned input would load every video's): they read
the run's video's render and timeline from the store themselves.
"""

import dagster as dg

from ..assets.profile_assets import report_publishes
from ..engine.config import EditProfile
from ..engine.timeline import Timeline
from ..engine.verify import CheckOutcome, evaluate_render, measure_render
from ..models import RenderOutput
from ..names import RENDER_CHECKS, RENDER_NAME, render_prefix
from ..resources import MediaStore, PydanticJsonIOManager


def check_render_file(store: MediaStore, key: str, timeline: Timeline, profile: EditProfile) -> list[CheckOutcome]:
    """The render checks' verdicts on the video stored at `key`."""
    with store.local_copy(key) as path:
        return evaluate_render(measure_render(path), timeline, profile)


def check_result(render_key: dg.AssetKey, video_id: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """One verdict, tied to its video: the checks' history lists every partition's executions
    together, so the metadata names the video beside the measurement (rounded) and a failed
    check's description starts with the video id."""
    measured = {k: round(v, 2) if isinstance(v, float) else v for k, v in outcome.metadata.items()}
    return dg.AssetCheckResult(
        asset_key=render_key,
        check_name=outcome.name,
        passed=outcome.passed,
        description=outcome.description if outcome.passed else f"{video_id}: {outcome.description}",
        metadata={"video_id": video_id, **measured},
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
    )


def build_render_checks(profile: EditProfile) -> dg.AssetChecksDefinition:
    render_key = dg.AssetKey([profile.name, "render"])
    timeline_key = dg.AssetKey([profile.name, "edit_timeline"])
    specs = [
        # Unpartitioned (see the module's docstring); each run checks its own video all the same.
        dg.AssetCheckSpec(
            check.name,
            asset=render_key,
            blocking=check.blocking,
            description=check.description,
            additional_deps=[timeline_key],
        )
        for check in RENDER_CHECKS
    ]

    @dg.multi_asset_check(name=f"{profile.name}_render_checks", specs=specs)
    def render_checks(context: dg.AssetCheckExecutionContext, store: MediaStore):
        """Measure the render to be published and compare it with the timeline and the profile."""
        # A video's run carries its partition, a backfill's run a one-video range: both name the video.
        if not (context.has_partition_key or context.has_partition_key_range):
            raise dg.Failure(f"{profile.name}_render_checks check one video each: run them with a video partition")
        video_id = context.partition_key
        stored = PydanticJsonIOManager(store=store)
        render = stored.load_partition(render_key, video_id, RenderOutput)
        edit_timeline = stored.load_partition(timeline_key, video_id, Timeline)
        measured = render.key_for_run(context.run.run_id)
        outcomes = check_render_file(store, measured, edit_timeline, profile)
        verified = all(o.passed for o in outcomes if o.blocking)
        if verified and measured != render.key and not report_publishes(context, profile.name):
            # A run without edit_report (the render alone, from the UI): publish the verified video now.
            store.promote(measured.removesuffix(RENDER_NAME), render_prefix(render.video_id, profile.name),
                          names=[RENDER_NAME])  # fmt: skip
        for outcome in outcomes:
            yield check_result(render_key, render.video_id, outcome)

    return render_checks
