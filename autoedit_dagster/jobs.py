"""Jobs: the per-video edit the sensor launches, one per profile with and without analysis (what
`autoedit backfill` runs), and the catalog refresh.

Every job uses the executor AUTOEDIT_EXECUTOR names (`executors.py`, read once when the code
location loads): in-process by default, because a video's steps form a chain over the same file,
so a process per step would add start-up time and parallelise nothing. Many videos run side by
side as separate runs (the run queue limits how many), or spread over workers with the Celery
executor in production (AUTOEDIT_EXECUTOR=celery, CELERY_BROKER_URL, CELERY_RESULT_BACKEND).

`autoedit backfill` launches a job backfill of `backfill_job_name(profile, with_analysis)`: one
run per video, each carrying the job's render tag (the run queue's limit), created by the
daemon's submit threads (bench/BACKFILL_RATE.md: an asset backfill of the same assets plans all
its runs first and rewrites a large row every 25 runs).
"""

import dagster as dg

from .executors import executor_from_env
from .names import (
    ANALYSIS_GROUPS,
    DEFAULT_PROFILE,
    PROFILE_NAMES,
    RENDER_RUN_TAGS,
    VIDEO_JOB,
    backfill_job_name,
    render_job_name,
)

EXECUTOR = executor_from_env()

video_job = dg.define_asset_job(
    VIDEO_JOB,
    selection=dg.AssetSelection.groups(*ANALYSIS_GROUPS, DEFAULT_PROFILE),
    executor_def=EXECUTOR,
    tags=RENDER_RUN_TAGS,
    description=f"Ingest, analyse and render one video in the `{DEFAULT_PROFILE}` profile (the upload sensor's job).",
)

# One per profile, the default one included: its group alone (`autoedit backfill --profile P`).
profile_jobs = {
    name: dg.define_asset_job(
        render_job_name(name),
        selection=dg.AssetSelection.groups(name),
        executor_def=EXECUTOR,
        tags=RENDER_RUN_TAGS,
        description=f"Render already-analysed videos in the `{name}` profile (analysis is loaded, not re-run).",
    )
    for name in PROFILE_NAMES
}

# Ingest and analysis then another profile (`autoedit backfill --profile P --with-analysis`);
# the default profile's is `video_job`.
analysis_profile_jobs = {
    name: dg.define_asset_job(
        backfill_job_name(name, with_analysis=True),
        selection=dg.AssetSelection.groups(*ANALYSIS_GROUPS, name),
        executor_def=EXECUTOR,
        tags=RENDER_RUN_TAGS,
        description=f"Ingest, analyse and render one video in the `{name}` profile.",
    )
    for name in PROFILE_NAMES
    if name != DEFAULT_PROFILE
}

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets("video_catalog"),
    executor_def=EXECUTOR,
    description="Refresh video_catalog.",
)
