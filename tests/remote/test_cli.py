"""`autoedit submit/status/fetch/backfill` against the fake server, with storage on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import MediaStore
from tests.remote.conftest import (
    BACKFILL_REPOSITORIES,
    LOCATION,
    REPO,
    VIDEO_ID,
    free_port,
    job_backfill_answer,
    materialized_node,
    run_steps_answer,
    video_assets_answer,
)


def _clip(tmp_path: Path, name: str = "Talk 1.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))  # the fake server never decodes it
    return path


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("autoedit: error: ")
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------- submit


def test_submit_uploads_atomically_and_prints_the_sensors_run(fake, cli, remote_store: MediaStore, tmp_path) -> None:
    source = _clip(tmp_path)
    result = cli("submit", str(source), "--url", fake.url, "--token", "tok", "--json")
    assert result.code == 0, result.err
    key = "uploads/Talk 1.mp4"
    video_id = video_id_for_upload(key)
    assert result.json() == {
        "video_id": video_id,
        "upload_uri": remote_store.uri(key),
        "profile": "tate",
        "run_id": "run-1",
        "job": "video_job",
        "status": "QUEUED",
    }
    assert remote_store.read_bytes(key) == source.read_bytes()
    # Only the published object: no temporary name left behind for the sensor to trip over.
    assert [obj.key for obj in remote_store.list("uploads/")] == [key]
    # The run was found by this upload's own etag, so an older upload of the same name cannot match.
    (runs,) = fake.find("AutoeditRuns")
    tags = {t["key"]: t["value"] for t in runs.body["variables"]["filter"]["tags"]}
    assert tags == {"autoedit/video_id": video_id, "autoedit/upload_etag": remote_store.stat(key).etag}
    assert all(r.headers.get("authorization") == "Bearer tok" for r in fake.requests)


def test_submit_other_profile_launches_its_job_after_video_job_succeeded(fake, cli, remote_store, tmp_path) -> None:
    result = cli("submit", str(_clip(tmp_path)), "--profile", "yoko", "--wait", "--url", fake.url)
    assert result.code == 0, result.err
    video_id = video_id_for_upload("uploads/Talk 1.mp4")
    assert result.out.splitlines()[:3] == [
        f"video  {video_id}",
        "run    run-1  video_job  SUCCESS",
        "run    run-2  yoko_job  SUCCESS",
    ]
    (launch,) = fake.find("launchPipelineExecution")
    params = launch.body["variables"]["executionParams"]
    assert params["selector"]["pipelineName"] == "yoko_job"
    assert {"key": "dagster/partition", "value": video_id} in params["executionMetadata"]["tags"]
    # video_job's status was polled before the launch
    first_launch = fake.requests.index(launch)
    assert any("AutoeditRunSteps" in r.query for r in fake.requests[:first_launch])


def test_submit_does_not_launch_the_profile_job_when_video_job_failed(fake, cli, remote_store, tmp_path) -> None:
    fake.answers["AutoeditRunSteps"] = run_steps_answer("FAILURE")
    result = cli("submit", str(_clip(tmp_path)), "--profile", "square", "--url", fake.url)
    assert result.code == 1
    assert "did not succeed" in _one_error_line(result.err)
    assert not fake.find("launchPipelineExecution")


def _submitted(status: str, entries: dict[str, str] | None = None):
    """`AutoeditVideoAssets` for the video `submit` made: its run-1 in `status`, tate/render made by it."""
    nodes = (
        [materialized_node(["tate", "render"], "tate", "run-1", entries, ("size_matches_profile",))] if entries else []
    )

    def answer(variables: dict, _query: str) -> dict:
        run = {"runId": "run-1", "jobName": "video_job", "status": status, "creationTime": 1000.0,
               "startTime": 1001.0, "endTime": 1010.0, "tags": []}  # fmt: skip
        return {"assetNodes": nodes, "v0p": {"__typename": "Runs", "results": [run]},
                "v0b": {"__typename": "Runs", "results": []}}  # fmt: skip

    return answer


def _second_request(passed: bool | None = None, failure: dict | None = None):
    """`AutoeditChecks`: the render's check in run-1's log and/or run-1's events with the step failure."""

    def answer(_variables: dict, query: str) -> dict:
        data: dict = {}
        if "l0:" in query:
            evaluation = {"assetKey": {"path": ["tate", "render"]}, "checkName": "size_matches_profile",
                          "success": passed, "severity": "ERROR", "description": "1080x1920"}  # fmt: skip
            data["l0"] = {"events": [{}, {"evaluation": evaluation}, {}]}
        if "f0:" in query:
            data["f0"] = {
                "__typename": "Run",
                "eventConnection": {"events": [{"__typename": "RunStartEvent"}, failure]},
            }
        return data

    return answer


STEP_FAILURE = {
    "__typename": "ExecutionStepFailureEvent",
    "stepKey": "source_video",
    "error": {
        "className": "DagsterExecutionStepExecutionError",
        "message": "Error occurred while executing op source_video",
        "cause": {
            "className": "UnsupportedMedia",
            "message": "engine.UnsupportedMedia: no video stream\n",
            "cause": None,
        },
    },
}


def test_submit_wait_follows_the_steps_and_ends_with_the_render(fake, cli, remote_store, tmp_path) -> None:
    fake.answers["AutoeditRunSteps"] = run_steps_answer(
        "SUCCESS", [("source_video", "SUCCESS"), ("media_analysis", "SUCCESS"), ("tate__render", "SUCCESS")]
    )
    final = "file:///srv/renders/talk/tate/final.mp4"
    fake.answers["AutoeditVideoAssets"] = _submitted("SUCCESS", {"video": final})
    fake.answers["AutoeditChecks"] = _second_request(passed=True)
    result = cli("submit", str(_clip(tmp_path)), "--wait", "--url", fake.url)
    assert result.code == 0, result.err
    video_id = video_id_for_upload("uploads/Talk 1.mp4")
    assert result.out.splitlines() == [
        f"video  {video_id}",
        "run    run-1  video_job  SUCCESS",
        f"render {final}",
        "checks tate/render: 1/1 passed",
        f"fetch  autoedit fetch {video_id} -o {video_id}-tate.mp4",
    ]
    steps = [line.split()[:3] for line in result.err.splitlines()]
    assert steps == [["step", "source_video", "SUCCESS"], ["step", "media_analysis", "SUCCESS"],
                     ["step", "tate__render", "SUCCESS"]]  # fmt: skip
    assert all(line.endswith("0.5 s") for line in result.err.splitlines())


def test_a_failed_submit_and_status_say_why(fake, cli, remote_store, tmp_path) -> None:
    fake.answers["AutoeditRunSteps"] = run_steps_answer("FAILURE", [("source_video", "FAILURE")])
    fake.answers["AutoeditVideoAssets"] = _submitted("FAILURE")
    fake.answers["AutoeditChecks"] = _second_request(failure=STEP_FAILURE)
    result = cli("submit", str(_clip(tmp_path)), "--wait", "--url", fake.url)
    video_id = video_id_for_upload("uploads/Talk 1.mp4")
    reason = "step source_video: UnsupportedMedia: no video stream"
    assert result.code == 1
    assert result.out.splitlines()[-1] == f"reason {reason}"
    assert result.err.splitlines()[-1] == (
        f"autoedit: error: a run for {video_id} did not succeed: {reason}; see `autoedit status {video_id}`"
    )
    # `status` says the same, in one request more than the assets (checks and reasons share one).
    fake.requests.clear()
    status = cli("status", video_id, "--url", fake.url)
    assert status.code == 0, status.err
    assert f"reason   {reason} (run run-1)" in status.out.splitlines()
    assert [r.query.split("{")[0].split("(")[0].strip() for r in fake.requests] == [
        "query AutoeditVideoAssets", "query AutoeditChecks",
    ]  # fmt: skip
    assert cli("status", video_id, "--json", "--url", fake.url).json()["failure"] == {
        "run_id": "run-1",
        "reason": reason,
    }

    # Once the server has quarantined the upload, `submit` gives the record's reason.
    record = {"video_id": video_id, "run_id": "run-1", "reason": "UnsupportedMedia: no video stream (recorded)"}
    remote_store.write_bytes(f"quarantine/{video_id}.json", json.dumps(record).encode())
    again = cli("submit", str(_clip(tmp_path)), "--wait", "--replace", "--url", fake.url)
    assert again.code == 1 and again.out.splitlines()[-1] == f"reason {record['reason']}"


def test_submit_refuses_to_overwrite_an_upload(fake, cli, remote_store, tmp_path) -> None:
    remote_store.write_bytes("uploads/Talk 1.mp4", b"earlier")
    result = cli("submit", str(_clip(tmp_path)), "--url", fake.url)
    assert result.code == 2
    assert "already exists" in _one_error_line(result.err)
    assert remote_store.read_bytes("uploads/Talk 1.mp4") == b"earlier"


def test_submit_checks_the_server_before_uploading(cli, remote_store, tmp_path) -> None:
    result = cli("submit", str(_clip(tmp_path)), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.code == 1
    assert "cannot reach" in _one_error_line(result.err)
    assert list(remote_store.list("uploads/")) == []


@pytest.mark.parametrize(
    ("name", "message"), [("notes.txt", "not a name the upload sensor accepts"), ("missing.mp4", "no such file")]
)
def test_submit_user_errors(fake, cli, tmp_path, name, message) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("hello")
    result = cli("submit", str(path), "--url", fake.url)
    assert result.code == 2
    assert message in _one_error_line(result.err)
    assert not fake.requests


# ---------------------------------------------------------------------------------------- status


def test_status_unknown_video(fake, cli) -> None:
    result = cli("status", "nope-00000000", "--url", fake.url)
    assert result.code == 2
    assert _one_error_line(result.err) == "autoedit: error: unknown video: nope-00000000"


@pytest.mark.parametrize(("status", "exit_code"), [(401, 2), (403, 2), (429, 1), (503, 1)])
def test_status_http_errors(fake, cli, status, exit_code) -> None:
    fake.status, fake.reply_body = status, b'{"detail": "no"}'
    result = cli("status", "--url", fake.url)
    assert result.code == exit_code
    assert str(status) in _one_error_line(result.err)
    assert result.out == ""


def test_status_bad_url(cli) -> None:
    result = cli("status", "--url", "localhost:3000")
    assert result.code == 2
    assert "bad server URL" in _one_error_line(result.err)


def test_url_and_token_from_the_environment(fake, cli, monkeypatch) -> None:
    monkeypatch.setenv("AUTOEDIT_URL", fake.url)
    monkeypatch.setenv("AUTOEDIT_TOKEN", "env-token")
    result = cli("status", "--json")
    assert result.code == 0, result.err
    assert fake.requests and all(r.headers.get("authorization") == "Bearer env-token" for r in fake.requests)


# ----------------------------------------------------------------------------------------- fetch


def test_fetch_downloads_render_and_exports_through_the_store(fake, cli, remote_store, tmp_path) -> None:
    prefix = f"renders/{VIDEO_ID}/tate/"
    names = {"video": "final.mp4", "fcpxml": "edit.fcpxml", "fcp7": "edit.fcp7.xml", "edl": "edit.edl",
             "otio": "edit.otio.json"}  # fmt: skip
    for label, name in names.items():
        remote_store.write_bytes(prefix + name, f"{label} bytes".encode())
    entries = {label: remote_store.uri(prefix + name) for label, name in names.items()}
    fake.answers["AutoeditVideoAssets"] = video_assets_answer(
        [materialized_node(["tate", "render"], "tate", "run-1", entries, ("size_matches_profile",))]
    )
    out = tmp_path / "out" / "talk.mp4"
    result = cli("fetch", VIDEO_ID, "-o", str(out), "--exports", "--url", fake.url)
    assert result.code == 0, result.err
    written = [Path(line) for line in result.out.splitlines()]
    assert written == [out, *(out.with_name("talk" + s) for s in (".fcpxml", ".fcp7.xml", ".edl", ".otio.json"))]
    assert out.read_bytes() == b"video bytes"
    assert out.with_name("talk.edl").read_bytes() == b"edl bytes"

    missing = cli("fetch", VIDEO_ID, "--profile", "yoko", "-o", str(out), "--url", fake.url)
    assert missing.code == 2
    assert "has no yoko render" in _one_error_line(missing.err)


# -------------------------------------------------------------------------------------- backfill


def _selector(job: str) -> dict:
    return {"partitionSetName": f"{job}_partition_set",
            "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}}  # fmt: skip


def test_backfill_selected_videos(fake, cli) -> None:
    result = cli("backfill", "--videos", f"{VIDEO_ID},{VIDEO_ID}", "--profile", "yoko", "--url", fake.url)
    assert result.code == 0, result.err
    assert result.out == "bf1\n"
    # Two requests: where yoko_job's partition set lives, then the job backfill (no asset listing, no video paging).
    assert [r.body["query"].split()[1] for r in fake.requests] == [
        "AutoeditBackfillTargets",
        "AutoeditBackfill($params:",
    ]
    (launch,) = fake.find("launchPartitionBackfill")
    params = launch.body["variables"]["params"]
    assert params["selector"] == _selector("yoko_job")
    assert "assetSelection" not in params
    assert params["partitionNames"] == [VIDEO_ID]
    assert "allPartitions" not in params
    assert {"key": "autoedit/profile", "value": "yoko"} in params["tags"]
    # The job carries it too; the backfill's tags are copied onto each run: the render limit counts them.
    assert {"key": "autoedit/kind", "value": "render"} in params["tags"]


@pytest.mark.parametrize(
    ("options", "job"),
    [
        (["--with-analysis"], "video_job"),
        ([], "tate_job"),
        (["--profile", "yoko", "--with-analysis"], "yoko_video_job"),
        (["--profile", "yoko"], "yoko_job"),
        (["--profile", "square", "--with-analysis"], "square_video_job"),
        (["--profile", "square"], "square_job"),
    ],
)
def test_backfill_all_names_the_job_of_each_profile_and_analysis_choice(fake, cli, options, job) -> None:
    result = cli("backfill", "--all", *options, "--url", fake.url)
    assert result.code == 0, result.err
    params = fake.find("launchPartitionBackfill")[0].body["variables"]["params"]
    assert params["allPartitions"] is True
    assert "partitionNames" not in params
    assert params["selector"] == _selector(job)


def test_backfill_unknown_video_is_refused_by_the_server(fake, cli) -> None:
    result = cli("backfill", "--videos", f"{VIDEO_ID},nope-00000000", "--url", fake.url)
    assert result.code == 2
    assert _one_error_line(result.err) == "autoedit: error: unknown video: nope-00000000"
    assert result.out == ""


def test_backfill_of_a_job_no_location_serves_launches_nothing(fake, cli) -> None:
    fake.answers["AutoeditBackfillTargets"] = {
        "repositoriesOrError": {"__typename": "RepositoryConnection", "nodes": BACKFILL_REPOSITORIES[1:]}
    }
    result = cli("backfill", "--all", "--url", fake.url)
    assert result.code == 1
    assert "serves no partitioned `tate_job`" in _one_error_line(result.err)
    assert not fake.find("launchPartitionBackfill")


def test_backfill_status_of_a_job_backfill(fake, cli) -> None:
    shown = cli("backfill", "--status", "bf1", "--url", fake.url)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("backfill bf1  COMPLETED_SUCCESS")
    assert "job      yoko_job" in lines and f"videos   {VIDEO_ID}" in lines and "progress 1 SUCCESS" in lines
    assert "run-9  yoko_job  SUCCESS" in shown.out
    info = cli("backfill", "--status", "bf1", "--json", "--url", fake.url).json()
    assert (info["kind"], info["job"], info["partitions_by_status"]) == ("job", "yoko_job", {"SUCCESS": 1})


def test_backfill_wait_polls_counts_then_reads_the_whole_backfill(fake, cli) -> None:
    polls = iter(
        [job_backfill_answer({"NOT_STARTED": 1}, "REQUESTED"), job_backfill_answer({"FAILURE": 1}, "COMPLETED_FAILED")]
    )
    current = next(polls)

    def answer(variables, query):
        nonlocal current
        data = current(variables, query)
        if variables["full"] is False:
            current = next(polls, current)
        return data

    fake.answers["AutoeditBackfillStatus"] = answer
    result = cli("backfill", "--videos", VIDEO_ID, "--profile", "yoko", "--wait", "--timeout", "30", "--url", fake.url)
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == "autoedit: error: backfill bf1 ended COMPLETED_FAILED"
    assert "progress 1 FAILURE" in result.out
    statuses = [r.body["variables"]["full"] for r in fake.find("AutoeditBackfillStatus")]
    assert statuses == [False, False, True]  # polls without names and runs, the whole backfill once at the end


def test_backfill_status_of_an_asset_backfill_launched_before(fake, cli) -> None:
    fake.answers["AutoeditBackfillStatus"] = {
        "partitionBackfillOrError": {
            "__typename": "PartitionBackfill", "id": "old1", "status": "COMPLETED_SUCCESS", "title": None,
            "numPartitions": 1, "timestamp": 1000.0, "endTimestamp": 1020.0, "isAssetBackfill": True,
            "partitionSetName": None, "jobName": None, "partitionNames": [VIDEO_ID], "error": None,
            "partitionStatusCounts": [], "runs": [],
            "assetBackfillData": {"assetBackfillStatuses": [
                {"__typename": "AssetPartitionsStatusCounts", "assetKey": {"path": ["yoko", "render"]},
                 "numPartitionsTargeted": 1, "numPartitionsInProgress": 0, "numPartitionsMaterialized": 1,
                 "numPartitionsFailed": 0},
            ]},
        }
    }  # fmt: skip
    shown = cli("backfill", "--status", "old1", "--url", fake.url)
    assert shown.code == 0, shown.err
    assert "yoko/render: 1/1 materialized, 0 failed, 0 in progress" in shown.out
    assert not any(line.startswith(("progress", "job ")) for line in shown.out.splitlines())


def test_backfill_needs_a_target(cli) -> None:
    with pytest.raises(SystemExit) as caught:
        cli("backfill", "--profile", "yoko")
    assert caught.value.code == 2


def test_errors_from_a_real_process_are_one_line() -> None:
    """The module as a process: exit status and stderr as a script sees them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEDIT_")}
    done = subprocess.run(
        [sys.executable, "-m", "autoedit_dagster.remote.commands", "status", "--url", f"http://127.0.0.1:{free_port()}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert "cannot reach" in _one_error_line(done.stderr)
