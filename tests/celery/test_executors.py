"""Executor selection (AUTOEDIT_EXECUTOR) and the Celery routing constants; no services needed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_celery.defaults import task_default_queue
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from autoedit_dagster import jobs
from autoedit_dagster.definitions import defs
from autoedit_dagster.engine.config import PROFILES
from autoedit_dagster.executors import (
    CELERY_EXECUTOR_CONFIG,
    CELERY_QUEUE_TAG,
    DEFAULT_QUEUE,
    RENDER_OP_TAGS,
    RENDER_QUEUE,
    executor_from_env,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({}, "in_process"),
        ({"AUTOEDIT_EXECUTOR": ""}, "in_process"),
        ({"AUTOEDIT_EXECUTOR": "in_process"}, "in_process"),
        ({"AUTOEDIT_EXECUTOR": "multiprocess"}, "multiprocess"),
        ({"AUTOEDIT_EXECUTOR": " Celery "}, "autoedit_celery"),
    ],
)
def test_executor_from_env(environ: dict[str, str], name: str) -> None:
    assert executor_from_env(environ).name == name


def test_unknown_executor_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"AUTOEDIT_EXECUTOR='k8s'.*in_process, multiprocess, celery"):
        executor_from_env({"AUTOEDIT_EXECUTOR": "k8s"})


def test_celery_config_comes_from_the_environment_at_run_time() -> None:
    """Broker and backend are `{"env": ...}` config: nothing is read when the code location loads."""
    assert CELERY_EXECUTOR_CONFIG == {
        "broker": {"env": "CELERY_BROKER_URL"},
        "backend": {"env": "CELERY_RESULT_BACKEND"},
    }


def test_queue_names_match_dagster_celery() -> None:
    """Our spelled-out tag and default queue are the ones dagster_celery's execution loop reads."""
    assert CELERY_QUEUE_TAG == DAGSTER_CELERY_QUEUE_TAG
    assert task_default_queue == DEFAULT_QUEUE
    assert RENDER_OP_TAGS == {DAGSTER_CELERY_QUEUE_TAG: RENDER_QUEUE}
    assert RENDER_QUEUE != DEFAULT_QUEUE


def test_every_job_uses_the_in_process_default() -> None:
    for job in (jobs.video_job, *jobs.profile_jobs.values(), jobs.catalog_job):
        assert defs.resolve_job_def(job.name).executor_def is dg.in_process_executor, job.name


def test_every_job_switches_to_celery_from_the_environment() -> None:
    # A fresh interpreter: the executor is fixed when the code location loads.
    script = (
        "import json; from autoedit_dagster import jobs; from autoedit_dagster.definitions import defs; "
        "names = [jobs.video_job.name, *(j.name for j in jobs.profile_jobs.values()), "
        "*(j.name for j in jobs.analysis_profile_jobs.values()), jobs.catalog_job.name]; "
        "print(json.dumps({n: defs.resolve_job_def(n).executor_def.name for n in names}))"
    )
    env = {**os.environ, "AUTOEDIT_EXECUTOR": "celery"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    executors = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(executors) == {
        "video_job",
        "catalog_job",
        *(f"{p}_job" for p in PROFILES),
        *(f"{p}_video_job" for p in PROFILES if p != "tate"),
    }
    assert set(executors.values()) == {"autoedit_celery"}


def test_render_steps_are_tagged_for_the_render_queue() -> None:
    """Render steps carry the dagster-celery queue tag, every other step uses the default queue."""
    for name in ("video_job", *(f"{p}_job" for p in PROFILES if p != "tate")):
        job = defs.resolve_job_def(name)
        queues = {node.name: node.tags.get(CELERY_QUEUE_TAG, DEFAULT_QUEUE) for node in job.graph.nodes}
        assert {n for n, q in queues.items() if q == RENDER_QUEUE} == {n for n in queues if n.endswith("__render")}
