"""Failures in production mode: a worker killed mid-render, an S3 endpoint that goes away, an uploader
killed mid-multipart. Nothing partial may ever appear at a final key, and a re-run must succeed.

(PostgreSQL restarts are not exercised here: the server is shared by every test on the machine.)
"""

from __future__ import annotations

import glob
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.names import TAG_UPLOAD_KEY, TAG_VIDEO_ID
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import S3MediaStore
from tests.production.conftest import PREFIX, REPO, Production, TcpProxy, ffprobe, free_port, start_worker

_MB = 1024 * 1024


def add_upload(production: Production, clip: Path, name: str) -> tuple[str, dict[str, str]]:
    """Upload `clip` as a producer would and register its partition; returns (video id, run tags)."""
    key = production.bucket.upload(clip, name)
    video_id = video_id_for_upload(key)
    production.instance.add_dynamic_partitions("videos", [video_id])
    return video_id, {TAG_UPLOAD_KEY: key, TAG_VIDEO_ID: video_id}


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def step_events(result: dg.ExecuteInProcessResult, event_type: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [event for event in result.all_events if event.event_type == event_type]


# ------------------------------------------------------------------------------------ kill -9


def test_worker_killed_mid_render_publishes_nothing_and_the_rerun_succeeds(
    production: Production, clip: Path, tmp_path: Path
) -> None:
    video_id, tags = add_upload(production, clip, "killed mid render.mp4")
    worker_tmp = tmp_path / "worker_tmp"
    worker = start_worker(video_id, tmpdir=worker_tmp, tags=tags)
    ffmpeg: list[int] = []
    try:

        def encoding() -> Path | None:
            assert worker.poll() is None, f"worker ended before the render: {worker.stderr.read()}"
            return next((p for p in map(Path, glob.glob(f"{worker_tmp}/*/.final.mp4.*.part")) if size(p)), None)

        # ffmpeg is encoding into the hidden .part file beside the (not yet existing) final.mp4.
        part = wait_for(encoding, timeout=90, what="the render's .part file")
        ffmpeg = [pid for pid in children(worker.pid) if str(part) in Path(f"/proc/{pid}/cmdline").read_text()]
        assert ffmpeg, "the .part file is written by an ffmpeg child of the worker"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
        # ffmpeg ignores SIGPIPE and outlives its killed parent, finishing the encode into the
        # orphaned temp folder; nothing publishes it, but it burns CPU: stop it.
        for pid in ffmpeg:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    keys = production.bucket.objects()
    work, renders = f"{PREFIX}/work/{video_id}/", f"{PREFIX}/renders/{video_id}/"
    assert f"{work}tate/edit_timeline.json" in keys  # the steps before the render did finish
    assert f"{work}tate/render.json" not in keys
    assert not [k for k in keys if k.startswith(renders)]  # no final.mp4, partial or otherwise
    assert production.bucket.open_multipart_uploads() == []

    # The dead run stays STARTED and keeps its render slot: the default run launcher cannot see a
    # dead worker, so run monitoring never ends it. Ending it is the operator's (or max_runtime's)
    # job; the daemon then frees the slot, as done here by hand.
    instance = production.instance
    (killed,) = instance.get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED
    assert [s.run_id for s in instance.event_log_storage.get_concurrency_info("render").claimed_slots] == [
        killed.run_id
    ]
    instance.report_run_failed(killed, "run worker killed (kill -9)")
    instance.event_log_storage.free_concurrency_slots_for_run(killed.run_id)

    rerun = (
        build_definitions()
        .resolve_job_def("video_job")
        .execute_in_process(partition_key=video_id, instance=instance, tags=tags, raise_on_error=False)
    )
    assert rerun.success
    final = production.bucket.download(f"renders/{video_id}/tate/final.mp4", tmp_path / "final.mp4")
    video = next(s for s in ffprobe(final)["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (1080, 1920)
    assert instance.event_log_storage.get_concurrency_info("render").claimed_slots == []


# ------------------------------------------------------------------------------ endpoint down


def test_s3_endpoint_down_for_a_few_seconds_is_retried_with_backoff(
    production: Production, clip: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    video_id, tags = add_upload(production, clip, "endpoint down.mp4")
    proxy = TcpProxy(moto_endpoint)  # nothing listens on its port yet: connections are refused
    store = S3MediaStore(bucket=production.bucket.name, prefix=PREFIX, endpoint_url=proxy.url)
    job = build_definitions(store).resolve_job_def("video_job")
    caplog.set_level(logging.DEBUG, logger="botocore.retries.standard")

    timer = proxy.up_after(3.0)
    started = time.monotonic()
    try:
        result = job.execute_in_process(
            partition_key=video_id, instance=production.instance, tags=tags, raise_on_error=False,
            asset_selection=[dg.AssetKey("source_video"), dg.AssetKey("media_analysis")],
        )  # fmt: skip
    finally:
        timer.cancel()
        proxy.down()
    elapsed = time.monotonic() - started

    assert result.success
    assert elapsed >= 3.0 and proxy.accepted > 0
    delays = [float(m) for m in re.findall(r"retrying request after delay of: ([\d.]+)", caplog.text)]
    assert len(delays) >= 2, "boto3 retried the refused connections"
    # Jittered exponential backoff: the retries were spread over the outage, not fired at once.
    assert sum(delays) > 1.0
    assert production.bucket.objects(f"{PREFIX}/work/{video_id}/media_analysis.parquet")


def test_s3_endpoint_that_stays_down_fails_clearly_in_bounded_time(production: Production, clip: Path) -> None:
    video_id, tags = add_upload(production, clip, "endpoint gone.mp4")
    dead = f"http://127.0.0.1:{free_port()}"
    # Two attempts per S3 call keeps the test short; the step's RetryPolicy still retries 3 times.
    store = S3MediaStore(bucket=production.bucket.name, prefix=PREFIX, endpoint_url=dead, max_attempts=2)
    job = build_definitions(store).resolve_job_def("video_job")

    started = time.monotonic()
    result = job.execute_in_process(
        partition_key=video_id, instance=production.instance, tags=tags, raise_on_error=False,
        asset_selection=[dg.AssetKey("source_video")],
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert not result.success
    assert len(step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 3  # IO_RETRY: max_retries=3
    (failure,) = step_events(result, dg.DagsterEventType.STEP_FAILURE)
    error = failure.step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any(f'Could not connect to the endpoint URL: "{dead}/' in m for m in messages), messages
    # 2 + 4 + 8 s of step backoff plus at most 1 s of boto3 backoff per attempt, and some slack.
    assert elapsed < 45


# -------------------------------------------------------------------------------- multipart


def test_large_upload_goes_multipart_and_is_published_atomically(
    production: Production, moto_endpoint: str, tmp_path: Path
) -> None:
    """While a 16 MB multipart upload replaces a key, readers only ever see the old or the new object."""
    proxy = TcpProxy(moto_endpoint, upload_bytes_per_second=16 * _MB).up()  # ~1 s upload: observable
    store = S3MediaStore(
        bucket=production.bucket.name, prefix=PREFIX, endpoint_url=proxy.url,
        multipart_threshold_mb=5, multipart_chunksize_mb=5, max_concurrency=1,
    )  # fmt: skip
    key = "renders/big-00000000/tate/final.mp4"
    store.write_bytes(key, b"previous render")
    big = tmp_path / "final.mp4"
    big.write_bytes(os.urandom(16 * _MB))

    client, full = production.bucket.client, f"{PREFIX}/{key}"
    seen: list[tuple[int, str, bool]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            head = client.head_object(Bucket=production.bucket.name, Key=full)
            in_flight = bool(production.bucket.open_multipart_uploads())
            seen.append((head["ContentLength"], head["ETag"].strip('"'), in_flight))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        store.put_file(big, key)
    finally:
        stop.set()
        watcher.join()
        proxy.down()

    final = client.head_object(Bucket=production.bucket.name, Key=full)
    assert final["ContentLength"] == 16 * _MB
    assert final["ETag"].strip('"').endswith("-4")  # multipart: 5 + 5 + 5 + 1 MB
    assert {size for size, _, _ in seen} <= {len(b"previous render"), 16 * _MB}
    assert any(in_flight and size == len(b"previous render") for size, _, in_flight in seen), (
        "the old object stayed in place while parts were uploading"
    )
    assert production.bucket.open_multipart_uploads() == []


UPLOADER = """
import sys
from autoedit_dagster.resources import S3MediaStore
bucket, prefix, endpoint, path, key = sys.argv[1:]
S3MediaStore(bucket=bucket, prefix=prefix, endpoint_url=endpoint, multipart_threshold_mb=5,
             multipart_chunksize_mb=5, max_concurrency=1).put_file(path, key)
"""


def test_uploader_killed_mid_multipart_leaves_no_object(
    production: Production, moto_endpoint: str, tmp_path: Path
) -> None:
    """kill -9 between parts: the key never appears; the unfinished upload is invisible to readers."""
    proxy = TcpProxy(moto_endpoint, upload_bytes_per_second=8 * _MB).up()
    big = tmp_path / "final.mp4"
    big.write_bytes(os.urandom(20 * _MB))
    key = "renders/killed-00000000/tate/final.mp4"
    bucket = production.bucket
    uploader = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, bucket.name, PREFIX, proxy.url, str(big), key],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def a_part_is_stored() -> bool:
            for upload in bucket.open_multipart_uploads():
                parts = bucket.client.list_parts(Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"])
                if parts.get("Parts"):
                    return True
            assert uploader.poll() is None, uploader.stderr.read() if uploader.stderr else ""
            return False

        wait_for(a_part_is_stored, timeout=30, what="the first stored part", interval=0.05)
        os.kill(uploader.pid, signal.SIGKILL)
        uploader.wait(timeout=10)
    finally:
        if uploader.poll() is None:
            os.kill(uploader.pid, signal.SIGKILL)
            uploader.wait()
        proxy.down()

    assert f"{PREFIX}/{key}" not in bucket.objects()
    assert not bucket.objects(f"{PREFIX}/renders/")
    # The parts stay billed until aborted: production buckets need an AbortIncompleteMultipartUpload rule.
    (orphan,) = bucket.open_multipart_uploads()
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=orphan["Key"], UploadId=orphan["UploadId"])
