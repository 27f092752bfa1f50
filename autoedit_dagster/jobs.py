"""Jobs: the per-video edit the sensor launches, one per extra profile, and the catalog refresh.

Every job uses the executor AUTOEDIT_EXECUTOR names (`executors.py`, read once when the code
location loads): in-process by default, because a video's steps form a chain over the same file,
so a process per step would add start-up time and parallelise nothing. Many videos run side by
side as separate runs (the run queue limits how many), or spread over workers with the Celery
executor in production (AUTOEDIT_EXECUTOR=celery, CELERY_BROKER_URL, CELERY_RESULT_BACKEND).
"""

import dagster as dg

from .executors import executor_from_env
from .names import ANALYSIS_GROUPS, DEFAULT_PROFILE, PROFILE_NAMES, RENDER_RUN_TAGS, VIDEO_JOB, profile_job_name

EXECUTOR = executor_from_env()

video_job = dg.define_asset_job(
    VIDEO_JOB,
    selection=dg.AssetSelection.groups(*ANALYSIS_GROUPS, DEFAULT_PROFILE),
    executor_def=EXECUTOR,
    tags=RENDER_RUN_TAGS,
    description=f"Ingest, analyse and render one video in the `{DEFAULT_PROFILE}` profile (the upload sensor's job).",
)

profile_jobs = {
    name: dg.define_asset_job(
        profile_job_name(name),
        selection=dg.AssetSelection.groups(name),
        executor_def=EXECUTOR,
        tags=RENDER_RUN_TAGS,
        description=f"Render already-analysed videos in the `{name}` profile (analysis is loaded, not re-run).",
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
