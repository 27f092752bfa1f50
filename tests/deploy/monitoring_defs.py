"""A code location for tests/deploy/test_run_monitoring.py: renders that hold the `render` pool.

Two runs of one long render asset, requested by a sensor (the second once the first renders), in the
project's render pool and with its render run tags. Each render writes its process id to
``$AUTOEDIT_TEST_MARKS/<run_id>`` when it holds the slot, then sleeps until it is killed.

Environment read: AUTOEDIT_TEST_MARKS (a folder).
"""

import os
import time
from pathlib import Path

import dagster as dg

from autoedit_dagster.assets.profile_assets import RENDER_POOL
from autoedit_dagster.names import RENDER_RUN_TAGS


@dg.asset(pool=RENDER_POOL)
def slow_render(context: dg.AssetExecutionContext) -> None:
    """Holds a render slot for minutes: long enough to be killed."""
    Path(os.environ["AUTOEDIT_TEST_MARKS"], context.run_id).write_text(str(os.getpid()))
    time.sleep(600)


render_job = dg.define_asset_job(
    "render_job", selection=[slow_render], tags=RENDER_RUN_TAGS, executor_def=dg.in_process_executor
)


@dg.sensor(job=render_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def two_renders(context: dg.SensorEvaluationContext) -> list[dg.RunRequest]:
    """A render, and a second one once the first holds the slot (run keys de-duplicate ticks)."""
    holding = any(Path(os.environ["AUTOEDIT_TEST_MARKS"]).iterdir())
    return [dg.RunRequest(run_key="first"), *([dg.RunRequest(run_key="second")] if holding else [])]


defs = dg.Definitions(assets=[slow_render], jobs=[render_job], sensors=[two_renders])
