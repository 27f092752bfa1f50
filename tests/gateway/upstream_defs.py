"""A tiny code location for the gateway tests: the asset keys and metadata `/metrics` reads, no media.

`source_video` -> `tate/render` (with two checks, one failing) -> `tate/edit_report`, on the real
`videos` partitions; `video_job` runs them. Served by the test dagster-webserver and run
in-process by the metrics tests, so both see the same instance history.
"""

import dagster as dg

from autoedit_dagster.partitions import videos

DURATION_S, OUTPUT_S, RENDER_S, SECONDS_REMOVED = 12.5, 8.0, 2.0, 4.5
RENDER = dg.AssetKey(["tate", "render"])


@dg.asset(partitions_def=videos)
def source_video(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Stands in for the probed upload."""
    context.log.info("probed the upload")
    return dg.MaterializeResult(metadata={"duration_s": DURATION_S})


@dg.asset(
    key=RENDER,
    deps=[source_video],
    partitions_def=videos,
    check_specs=[
        dg.AssetCheckSpec("size_matches_profile", asset=RENDER),
        dg.AssetCheckSpec("loudness_on_target", asset=RENDER),
    ],
)
def render() -> dg.MaterializeResult:
    """Stands in for the ffmpeg render."""
    return dg.MaterializeResult(
        metadata={"output_s": OUTPUT_S, "render_s": RENDER_S},
        check_results=[
            dg.AssetCheckResult(check_name="size_matches_profile", passed=False, severity=dg.AssetCheckSeverity.ERROR),
            dg.AssetCheckResult(check_name="loudness_on_target", passed=True, severity=dg.AssetCheckSeverity.WARN),
        ],
    )


@dg.asset(key=["tate", "edit_report"], deps=[render], partitions_def=videos)
def edit_report() -> dg.MaterializeResult:
    """Stands in for the per-video report."""
    return dg.MaterializeResult(metadata={"seconds_removed": SECONDS_REMOVED})


video_job = dg.define_asset_job("video_job", selection=dg.AssetSelection.all())

defs = dg.Definitions(assets=[source_video, render, edit_report], jobs=[video_job])


def run_video(instance: dg.DagsterInstance, video_id: str) -> dg.ExecuteInProcessResult:
    """One finished `video_job` run for `video_id` on `instance` (the partition is added first)."""
    instance.add_dynamic_partitions(videos.name, [video_id])
    return defs.resolve_job_def("video_job").execute_in_process(instance=instance, partition_key=video_id)
