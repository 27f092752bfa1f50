"""How a run's steps execute: chosen once, from the environment, for every job in the code location.

Environment:

- ``AUTOEDIT_EXECUTOR``: ``in_process`` (default), ``multiprocess`` or ``celery``. Read once, when
  the code location loads (`jobs.py` calls :func:`executor_from_env`): an executor is part of a
  job's definition, so it cannot change per run. Set the same value wherever the code location
  loads (webserver, daemon, code server, run workers and Celery workers).
- ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND`` (celery only): the broker and result backend,
  e.g. ``redis://redis:6379/0`` for both. Dagster ``{"env": ...}`` config, resolved in the run
  process when the run starts, never at import; a missing variable fails the run with its name.

Why ``in_process`` is the default: the per-video steps form a chain (ingest -> analysis -> crop
path -> timeline -> render -> previews/exports/report), each needing the previous one's output,
so a process per step adds start-up time (a Python process importing Dagster, polars, OpenCV)
and parallelises almost nothing. Many videos run side by side as separate runs (the run queue
limits how many). ``multiprocess`` lets the few independent steps (speech vs shots, the exports)
overlap on a larger machine. ``celery`` spreads steps over worker machines fed from a broker.

Celery routing: dagster_celery submits each step to the queue named by the step's op tag
``dagster-celery/queue`` (``step.tags.get(DAGSTER_CELERY_QUEUE_TAG, task_default_queue)`` in
``dagster_celery.core_execution_loop``), else to ``dagster``. Render steps carry
:data:`RENDER_OP_TAGS`, so they go to :data:`RENDER_QUEUE` and only workers started with
``-q autoedit-render`` run them; every other step goes to :data:`DEFAULT_QUEUE`. The tag is
ignored by the other executors. Celery needs what multiprocess needs: a non-ephemeral instance
(workers record events through the run's instance ref: PostgreSQL when they are on other
machines) and persistent IO managers (ours write to the MediaStore, local or S3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

EXECUTOR_ENV = "AUTOEDIT_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_EXECUTOR = "in_process"

# `dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG`, spelled out so that asset modules can tag their
# ops without importing Celery (tests/celery checks that the two agree).
CELERY_QUEUE_TAG = "dagster-celery/queue"
# dagster_celery's default queue (`dagster_celery.defaults.task_default_queue`).
DEFAULT_QUEUE = "dagster"
RENDER_QUEUE = "autoedit-render"
# Op tags for the render assets: `@dg.asset(..., op_tags=RENDER_OP_TAGS)`.
RENDER_OP_TAGS: Mapping[str, str] = {CELERY_QUEUE_TAG: RENDER_QUEUE}

# The `execution: config:` block of a celery run, and the `-y` file of `dagster-celery worker
# start` (wrap it as {"execution": {"config": ...}}): both sides must name the same broker.
CELERY_EXECUTOR_CONFIG: Mapping[str, Any] = {
    "broker": {"env": "CELERY_BROKER_URL"},
    "backend": {"env": "CELERY_RESULT_BACKEND"},
}


def build_executor(kind: str) -> dg.ExecutorDefinition:
    """The executor named `kind` (one of EXECUTORS), configured for this code location."""
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "celery":
        # Imported only when chosen: Celery is not needed to load the code location otherwise.
        from dagster_celery import celery_executor

        return celery_executor.configured(dict(CELERY_EXECUTOR_CONFIG), name="autoedit_celery")
    raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected one of {', '.join(EXECUTORS)}")


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor that AUTOEDIT_EXECUTOR names (default in_process); the only reader of it."""
    environ = os.environ if environ is None else environ
    return build_executor(environ.get(EXECUTOR_ENV, "").strip().lower() or DEFAULT_EXECUTOR)
