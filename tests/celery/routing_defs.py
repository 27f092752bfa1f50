"""A two-asset job for the Celery routing test: `prepared` on the default queue, `rendered` tagged
for the render queue with the same op tags the render assets use. Loaded by `dagster job execute`
and by the Celery workers; uses the executor AUTOEDIT_EXECUTOR names, like the real jobs.
"""

import os

import dagster as dg

from autoedit_dagster.executors import RENDER_OP_TAGS, executor_from_env


@dg.asset
def prepared() -> int:
    """The pid of the process that ran this step."""
    return os.getpid()


@dg.asset(op_tags=dict(RENDER_OP_TAGS))
def rendered(prepared: int) -> int:
    """The pid of the process that ran this step (a render-queue step)."""
    return os.getpid()


routing_job = dg.define_asset_job("routing_job", selection=[prepared, rendered], executor_def=executor_from_env())

defs = dg.Definitions(assets=[prepared, rendered], jobs=[routing_job])
