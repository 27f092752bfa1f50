"""`/review` with run states and re-edits, through a real gateway in front of a real dagster-webserver app
(in-process, on loopback) serving the real definitions on an instance whose runs only queue.

Queued, running and failed read as such (not "queued or running"); a re-edit with changed
settings of a non-default profile queues Dagster's asset job over `speech_segments` and that
profile's group with the new config, tagged for the render limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_webserver.webserver import DagsterWebserver

from autoedit_dagster.names import REPORT_NAME, render_prefix
from autoedit_dagster.partitions import video_id_for_upload, videos
from autoedit_dagster.resources import LocalMediaStore

from .conftest import ServerThread, bearer, token

DONE, QUEUED, RUNNING, FAILED, WAITING = (
    f"uploads/{name}.mp4" for name in ("done", "queued", "running", "failed", "waiting")
)
QUEUED_ONLY = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}


@pytest.fixture(scope="module")
def webserver() -> Iterator[tuple[str, dg.DagsterInstance]]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="autoedit_dagster.definitions", attribute="defs"), location_name="autoedit"
    )
    with (
        dg.instance_for_test(overrides=QUEUED_ONLY) as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context,
    ):
        server = ServerThread(DagsterWebserver(context).create_asgi_app())
        try:
            yield server.url, instance
        finally:
            server.stop()


def _run(instance: dg.DagsterInstance, video_id: str, status: dg.DagsterRunStatus) -> None:
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="autoedit_dagster.definitions"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "video_job")
    job = dg.GraphDefinition("video_job").to_job()
    instance.create_run_for_job(job, status=status, tags={"dagster/partition": video_id}, remote_job_origin=origin)


@pytest.fixture
def review(webserver, start_gateway, tmp_path) -> tuple[str, dg.DagsterInstance]:
    url, instance = webserver
    store = LocalMediaStore(root=str(tmp_path / "storage"))
    for key in (DONE, QUEUED, RUNNING, FAILED, WAITING):
        store.write_bytes(key, b"source")
    done = video_id_for_upload(DONE)
    report = {"video_id": done, "profile": "tate", "upload_key": DONE, "source_duration": 10.0,
              "output_duration": 7.5, "seconds_removed": 2.5, "shots": 2, "render_uri": "x"}  # fmt: skip
    store.write_bytes(render_prefix(done, "tate") + REPORT_NAME, str(report).replace("'", '"').encode())
    instance.add_dynamic_partitions(videos.name, [video_id_for_upload(k) for k in (DONE, QUEUED, RUNNING, FAILED)])
    _run(instance, video_id_for_upload(QUEUED), dg.DagsterRunStatus.QUEUED)
    _run(instance, video_id_for_upload(RUNNING), dg.DagsterRunStatus.STARTED)
    _run(instance, video_id_for_upload(FAILED), dg.DagsterRunStatus.FAILURE)
    return start_gateway(url, rate_limit=0, store=store), instance


def _status_of(page: str, video_id: str) -> str:
    row = page.split(f'href="/review/v/{video_id}"', 1)[1]
    return row.split('class="status"', 1)[1].split(">", 1)[1].split("<", 1)[0]


def test_the_list_tells_queued_from_running_and_a_non_default_profile_is_re_edited(review) -> None:
    url, instance = review
    operator = bearer(token("operator", subject="editor"))
    with httpx.Client(timeout=30, trust_env=False) as client:
        page = client.get(f"{url}/review", headers=operator).text
        states = {key: _status_of(page, video_id_for_upload(key)) for key in (DONE, QUEUED, RUNNING, FAILED, WAITING)}
        assert states == {DONE: "done", QUEUED: "queued", RUNNING: "running", FAILED: "failed", WAITING: "queued"}
        ids = ",".join(video_id_for_upload(k) for k in (QUEUED, RUNNING))
        live = client.get(f"{url}/review/status.json?ids={ids}", headers=operator).json()
        assert live == {
            video_id_for_upload(QUEUED): {"text": "queued", "live": True},
            video_id_for_upload(RUNNING): {"text": "running", "live": True},
        }

        done = video_id_for_upload(DONE)
        form = {"profile": "square", "margin_s": "0.5", "cut_on": "loudness"}
        reply = client.post(f"{url}/review/v/{done}/reedit", data=form, headers=operator)
        assert reply.status_code == 303, reply.text
        (run,) = instance.get_runs(dg.RunsFilter(tags={"autoedit/requested_by": "editor"}))
        assert run.status == dg.DagsterRunStatus.QUEUED and run.job_name == "__ASSET_JOB"
        selected = {"/".join(key.path) for key in run.asset_selection or ()}
        assert "speech_segments" in selected and "square/render" in selected and "square/edit_report" in selected
        assert not any(key.startswith(("tate/", "yoko/")) for key in selected) and "media_analysis" not in selected
        config = run.run_config["ops"]["speech_segments"]["config"]
        assert config == {"detector": "loudness", "margin_before_s": 0.5, "margin_after_s": 0.5}
        assert run.tags["dagster/partition"] == done and run.tags["autoedit/kind"] == "render"
        assert run.tags["autoedit/profile"] == "square"
        tate = client.post(f"{url}/review/v/{done}/reedit", data={**form, "profile": "tate"}, headers=operator)
        assert tate.status_code == 303
        tate_run = next(r for r in instance.get_runs(dg.RunsFilter(tags={"autoedit/profile": "tate"})))
        assert tate_run.job_name == "video_job" and tate_run.run_config == run.run_config
        # The page now says a re-edit of the rendered video is queued, and keeps polling it.
        page = client.get(f"{url}/review", headers=operator).text
        assert _status_of(page, done) == "done · re-edit queued" and f'data-live-status="{done}"' in page


def test_an_upload_whose_video_is_being_processed_is_not_replaced(review, tmp_path) -> None:
    """`replace=1` under a queued or running run once went through: that run, reading the old file,
    could publish its renders after the new file's. A failed run or none: replaced."""
    url, _instance = review
    store = LocalMediaStore(root=str(tmp_path / "storage"))
    operator = {**bearer(token("operator")), "Content-Type": "application/octet-stream"}
    with httpx.Client(timeout=30, trust_env=False) as client:
        statuses = {
            key: client.post(
                f"{url}/uploads",
                params={"name": key.removeprefix("uploads/"), "replace": "1"},
                content=b"second version",
                headers=operator,
            )
            for key in (QUEUED, RUNNING, FAILED, WAITING)
        }
    for key in (QUEUED, RUNNING):
        assert statuses[key].status_code == 409 and "being processed" in statuses[key].json()["detail"]
        assert store.read_bytes(key) == b"source"
    for key in (FAILED, WAITING):
        assert statuses[key].status_code == 201, statuses[key].text
        assert store.read_bytes(key) == b"second version"
