"""`make demo`: the real Dagster pipeline on the embedded default, from nothing to renders.

Starts `dagster-daemon` on the instance in DAGSTER_HOME (unless a daemon, e.g. `make ui`'s, is
already running on it), puts the sample videos and a generated talk clip into
`$AUTOEDIT_STORAGE/uploads/`, lets the upload sensor launch one `video_job` run per file, waits
for the runs to finish, prints a table and the render paths, and stops the daemon it started
(also on Ctrl-C, SIGTERM or an error; on Ctrl-C it first cancels the demo's unfinished runs, and
the next `make demo` launches those again).

Idempotent: an upload already in `uploads/` is not copied again, and the sensor's cursor and run
keys make sure it is not run again; its earlier result is printed. Start over with
`rm -rf .dagster_home .storage`.

Environment: DAGSTER_HOME (required; the Makefile sets `.dagster_home/` and copies
`deploy/dagster.local.yaml` to `dagster.yaml` there), AUTOEDIT_STORAGE (the Makefile sets
`.storage/`; S3 works too), DEMO_TIMEOUT (seconds to wait for the runs, default 900).

Exit status: 0 every run succeeded, 1 a run failed or was canceled, 2 timeout or set-up error,
130 interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import dagster as dg

from autoedit_dagster.jobs import video_job
from autoedit_dagster.names import (
    DEFAULT_PROFILE,
    REPORT_NAME,
    TAG_UPLOAD_KEY,
    TAG_VIDEO_ID,
    UPLOADS_PREFIX,
    quarantine_key,
    render_prefix,
)
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import MediaStore, media_store_from_env

# scripts/ is not a package: reuse the engine demo's generated talk clip (and its cache folder).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import OUT as CLI_DEMO_OUT
from demo import talk_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = ROOT.parent / "shared" / "media"
WORKSPACE = ROOT / "workspace.yaml"
INSTANCE_CONFIG = ROOT / "deploy" / "dagster.local.yaml"
POLL_SECONDS = 2.0
QUARANTINE_WAIT_SECONDS = 30.0  # the quarantine sensor ticks every 10 s
DAEMON_STOP_SECONDS = 30.0
# A daemon heartbeats every 30 s; a newer heartbeat than our own daemon's last one is another daemon's.
HEARTBEAT_FRESH_SECONDS = 45.0
STOPPED_MARK = ".demo-daemon-stopped"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class DemoError(Exception):
    """A set-up problem or a timeout, reported in one line."""


@dataclass
class Upload:
    source: Path
    key: str
    video_id: str
    copied_at: float | None = None  # epoch seconds of the rename into uploads/; None: already there


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------- set-up


def dagster_home() -> Path:
    value = os.environ.get("DAGSTER_HOME")
    if not value:
        raise DemoError("DAGSTER_HOME is not set; run `make demo` (it sets DAGSTER_HOME=.dagster_home)")
    home = Path(value).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(INSTANCE_CONFIG, config)
    return home


def sample_sources() -> list[Path]:
    sources = sorted(SHARED_MEDIA.glob("*.mp4"))
    CLI_DEMO_OUT.mkdir(exist_ok=True)
    sources.append(talk_clip(CLI_DEMO_OUT / "talk.mp4"))
    return sources


def plan_uploads(sources: list[Path]) -> list[Upload]:
    uploads = []
    for source in sources:
        key = f"{UPLOADS_PREFIX}{source.name}"
        uploads.append(Upload(source=source, key=key, video_id=video_id_for_upload(key)))
    return uploads


def put_uploads(store: MediaStore, uploads: list[Upload]) -> None:
    """Copy each new file in atomically (hidden temp name, then rename: the sensor skips dot-files)."""
    for upload in uploads:
        if store.exists(upload.key):
            log(f"{upload.key} already uploaded ({upload.video_id}); not copied again")
            continue
        store.put_file(upload.source, upload.key)
        upload.copied_at = time.time()
        log(f"uploaded {upload.source.name} -> {store.uri(upload.key)}")


# ------------------------------------------------------------------------------------- daemon


def other_daemon_running(instance: dg.DagsterInstance, home: Path) -> bool:
    """True if a daemon not started by an earlier demo (e.g. `make ui`'s) heartbeats on this instance."""
    mark = home / STOPPED_MARK
    our_last_stop = float(mark.read_text()) if mark.exists() else 0.0
    now = time.time()
    return any(
        now - beat.timestamp < HEARTBEAT_FRESH_SECONDS and beat.timestamp > our_last_stop
        for beat in instance.get_daemon_heartbeats().values()
    )


class Daemon:
    """`dagster-daemon run -w workspace.yaml` in its own process group, logging to DAGSTER_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log_path = home / "demo-daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Create the SQLite schemas first: on a fresh DAGSTER_HOME the daemon, its code server and
        # our own instance otherwise race to create them ("table jobs already exists") and the
        # daemon can die.
        with dg.DagsterInstance.from_config(str(self.home)):
            pass
        binary = Path(sys.executable).with_name("dagster-daemon")
        command = [str(binary) if binary.exists() else "dagster-daemon", "run", "-w", str(WORKSPACE)]
        with self.log_path.open("ab") as out:
            # Own session: Ctrl-C reaches only this script, which then stops the daemon in order.
            self.proc = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log(f"started dagster-daemon (pid {self.proc.pid}, log {self.log_path})")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"dagster-daemon exited with status {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def started(self) -> bool:
        return self.proc is not None

    def _group_alive(self, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM the daemon (it stops its threads and code server), then make sure its group is gone."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the daemon leads its own process group
        if self.proc.poll() is None:
            log("stopping dagster-daemon")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DAEMON_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log("dagster-daemon did not stop in time; killing it")
        # The code server exits a second or so after the daemon; anything left after that is killed.
        deadline = time.monotonic() + DAEMON_STOP_SECONDS / 3
        while self._group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()
        (self.home / STOPPED_MARK).write_text(f"{time.time():.3f}")
        self.proc = None


# --------------------------------------------------------------------------------------- runs


def latest_run(instance: dg.DagsterInstance, video_id: str) -> dg.RunRecord | None:
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=video_job.name, tags={"dagster/partition": video_id}), limit=1
    )
    return records[0] if records else None


def relaunch_canceled(instance: dg.DagsterInstance, uploads: list[Upload]) -> None:
    """Queue a new run for demo videos whose last run was canceled (an interrupted `make demo`).

    Failed runs are not retried: they are results. The sensor does not request these again (its
    cursor has seen the uploads), so the demo submits them with `dagster job launch`.
    """
    launches = []
    for upload in uploads:
        record = latest_run(instance, upload.video_id)
        if record is None or record.dagster_run.status != dg.DagsterRunStatus.CANCELED:
            continue
        log(f"{upload.video_id}: its last run was canceled; launching it again")
        tags = {"dagster/partition": upload.video_id, TAG_VIDEO_ID: upload.video_id, TAG_UPLOAD_KEY: upload.key}
        command = [str(Path(sys.executable).with_name("dagster")), "job", "launch", "-w", str(WORKSPACE),
                   "-j", video_job.name, "--tags", json.dumps(tags)]  # fmt: skip
        launches.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for proc in launches:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise DemoError(f"`dagster job launch` failed:\n{err.decode(errors='replace')[-2000:]}")


def cancel_unfinished(instance: dg.DagsterInstance, uploads: list[Upload]) -> None:
    """Cancel the demo's queued or running runs (while the daemon's code server can still stop them)."""
    pending = []
    for upload in uploads:
        record = latest_run(instance, upload.video_id)
        if record is None or record.dagster_run.status in FINISHED:
            continue
        log(f"{upload.video_id}: canceling run {record.dagster_run.run_id}")
        try:
            instance.run_coordinator.cancel_run(record.dagster_run.run_id)
        except Exception:  # not started yet, or its worker is gone: record the cancellation
            instance.report_run_canceled(record.dagster_run)
        pending.append(upload.video_id)
    deadline = time.monotonic() + DAEMON_STOP_SECONDS
    while pending and time.monotonic() < deadline:
        pending = [v for v in pending if (r := latest_run(instance, v)) and r.dagster_run.status not in FINISHED]
        time.sleep(0.5)


def wait_for_runs(
    instance: dg.DagsterInstance, uploads: list[Upload], daemon: Daemon, timeout: float
) -> dict[str, dg.RunRecord]:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        daemon.check_alive()
        records = {u.video_id: latest_run(instance, u.video_id) for u in uploads}
        for upload in uploads:
            record = records[upload.video_id]
            status = record.dagster_run.status.value if record else "waiting for the sensor"
            if seen.get(upload.video_id) != status:
                seen[upload.video_id] = status
                since = f" ({time.time() - upload.copied_at:.0f} s after upload)" if upload.copied_at and record else ""
                log(f"{upload.video_id}: {status}{since}")
        if all(r is not None and r.dagster_run.status in FINISHED for r in records.values()):
            return {k: v for k, v in records.items() if v is not None}
        if time.monotonic() > deadline:
            missing = [k for k, r in records.items() if r is None]
            running = [k for k, r in records.items() if r is not None and r.dagster_run.status not in FINISHED]
            hints = []
            if missing:
                hints.append(
                    f"no run for {', '.join(missing)}: is `upload_sensor` running (`make ui` -> Automation)? "
                    f"daemon log: {daemon.log_path}"
                )
            if running:
                hints.append(f"still running: {', '.join(running)}; raise DEMO_TIMEOUT or watch them in `make ui`")
            raise DemoError(f"timed out after {timeout:.0f} s. " + " ".join(hints))
        time.sleep(POLL_SECONDS)


def failure_reason(instance: dg.DagsterInstance, store: MediaStore, record: dg.RunRecord, video_id: str) -> str:
    """The quarantine record's reason (written by the quarantine sensor), else the run's failure message."""
    key = quarantine_key(video_id)
    deadline = time.monotonic() + QUARANTINE_WAIT_SECONDS
    while record.dagster_run.status == dg.DagsterRunStatus.FAILURE and time.monotonic() < deadline:
        if store.exists(key):
            return json.loads(store.read_bytes(key))["reason"] + f" ({store.uri(key)})"
        time.sleep(POLL_SECONDS)
    failures = instance.get_records_for_run(
        record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1
    ).records
    if failures and failures[0].event_log_entry.dagster_event:
        return failures[0].event_log_entry.dagster_event.message or "run failed"
    return record.dagster_run.status.value.lower()


def results_table(
    instance: dg.DagsterInstance, store: MediaStore, records: dict[str, dg.RunRecord], uploads: list[Upload]
) -> tuple[list[tuple[str, ...]], list[str]]:
    rows: list[tuple[str, ...]] = []
    renders: list[str] = []
    for upload in uploads:
        record = records[upload.video_id]
        run = record.dagster_run
        took = f"{record.end_time - record.start_time:.0f} s" if record.start_time and record.end_time else "-"
        report_key = render_prefix(upload.video_id, DEFAULT_PROFILE) + REPORT_NAME
        if run.status == dg.DagsterRunStatus.SUCCESS and store.exists(report_key):
            report = json.loads(store.read_bytes(report_key))
            kept = f"{report['output_duration']:.1f}/{report['source_duration']:.1f} s"
            outcome = file_path(report["render_uri"])
            renders.append(outcome)
        else:
            kept = "-"
            outcome = failure_reason(instance, store, record, upload.video_id)
        rows.append((upload.video_id, run.status.value, took, kept, outcome))
    return rows, renders


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("video id", "run", "run time", "kept/source", "render or quarantine reason")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


def file_path(uri: str) -> str:
    """A local path for file:// URIs (what people paste into a player); other URIs unchanged."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else uri


# --------------------------------------------------------------------------------------- main


def run_demo(timeout: float) -> int:
    home = dagster_home()
    store = media_store_from_env()
    log(f"instance: {home} (SQLite); uploads: {store.uri(UPLOADS_PREFIX.rstrip('/'))}")
    uploads = plan_uploads(sample_sources())
    daemon = Daemon(home)
    with dg.DagsterInstance.get() as instance:
        try:
            if other_daemon_running(instance, home):
                log("a dagster daemon is already running on this instance (`make ui`?); using it")
            else:
                daemon.start()
            put_uploads(store, uploads)
            relaunch_canceled(instance, uploads)
            log(f"waiting for the upload sensor and {len(uploads)} run(s) (timeout {timeout:.0f} s)")
            try:
                records = wait_for_runs(instance, uploads, daemon, timeout)
            except KeyboardInterrupt:
                if daemon.started:  # runs of someone else's daemon (`make ui`) carry on
                    cancel_unfinished(instance, uploads)
                raise
            rows, renders = results_table(instance, store, records, uploads)
        finally:
            daemon.stop()
    print_table(rows)
    if renders:
        print("\nRenders (thumb.jpg, timeline.png, edit.fcpxml/.fcp7.xml/.edl/.otio.json, report.json beside each):")
        for path in renders:
            print(f"  {path}")
    print("\nSee the runs, lineage and checks in the UI on the same instance: make ui  (http://127.0.0.1:3000)")
    failed = [row[0] for row in rows if row[1] != dg.DagsterRunStatus.SUCCESS.value]
    if failed:
        print(f"\n{len(failed)} run(s) did not succeed: {', '.join(failed)}", file=sys.stderr)
        print("Failed runs are results and are not retried; start over with: rm -rf .dagster_home .storage",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    timeout = float(os.environ.get("DEMO_TIMEOUT", "900"))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or a CI timeout: stop the daemon too
    try:
        return run_demo(timeout)
    except DemoError as exc:
        print(f"\nmake demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmake demo: interrupted; runs canceled and the daemon stopped (re-run to finish)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
