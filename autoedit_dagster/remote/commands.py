"""`autoedit submit | status | fetch | backfill`: drive a running deployment over Dagster's GraphQL API.

    autoedit submit FILE [--profile P] [--wait] [--name NAME] [--replace] [--json]
    autoedit status [VIDEO_ID] [--json] [--limit N]
    autoedit fetch VIDEO_ID [--profile P] -o PATH [--exports]
    autoedit backfill (--all | --videos a,b) [--profile P] [--with-analysis] [--wait] [--json]
    autoedit backfill --status ID [--wait] [--json]

`submit` copies FILE into ``uploads/`` through the MediaStore (a hidden temporary name, then a
rename or an S3 publish, so the upload sensor never sees half a file) and waits for the sensor's
`video_job` run to appear, printing the video id and run id; `--wait` waits for the run to end,
printing one line on stderr per finished step, and ends with the render's location, its check
results and the `fetch` command to run, or, when a run failed, the reason (the quarantine
record's, else the failed step's error). For another profile than `tate` it waits for
`video_job` to succeed and then launches that profile's job for the video. `status` shows, per
video, the latest runs, every asset's state, the render checks' results, the output URIs and why
its latest run failed (two GraphQL requests for one video, however many assets). `fetch`
downloads a render (and with `--exports` its FCPXML, FCP7 XML, EDL and OTIO beside it) through
the MediaStore. `backfill` launches a job backfill over some or all videos
(`video_job` for `tate --with-analysis`, else the profile's job with or without ingest and
analysis: one run per video, each with the render tag the run queue limits) and prints its id;
`--status` shows a backfill's runs counted by status (or, for asset backfills launched by older
versions, its counts per asset).

Every command takes `--url` (default: AUTOEDIT_URL, else http://127.0.0.1:3000, the webserver or
the gateway in front of it) and `--token` (default: AUTOEDIT_TOKEN; sent as
``Authorization: Bearer``). `submit` and `fetch` move media through the store AUTOEDIT_STORAGE
names (a folder or s3://bucket/prefix, with AWS_ENDPOINT_URL and the AWS_* credentials): it must
be the storage the server uses; or, given `--gateway URL` (default: AUTOEDIT_GATEWAY_URL), through
the gateway's `POST /uploads` and `GET /media/...` with the token alone (`transfer.py`).

A 429 from the gateway is waited out once (its Retry-After, up to a minute), said on stderr.

Exit status: 0 success; 2 a user error (bad URL, token refused, unknown video or backfill, missing
file, nothing rendered yet); 1 anything else (server unreachable, rate limited, server or GraphQL
error, a run or backfill that did not succeed, a timeout). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autoedit_dagster.names import (
    DEFAULT_PROFILE,
    PROFILE_NAMES,
    RENDER_RUN_TAGS,
    TAG_PROFILE,
    VIDEO_JOB,
    backfill_job_name,
    profile_job_name,
)

from .client import AutoEditClient
from .display import backfill_progress, check_summary, print_backfill, print_json, print_table, print_video
from .errors import RemoteError, UsageError, one_line
from .records import BACKFILL_SUCCEEDED, EXPORT_LABELS, RENDER_LABEL
from .transfer import GATEWAY_ENV, gateway_url, open_transfer, upload_key

DEFAULT_URL = "http://127.0.0.1:3000"
URL_ENV = "AUTOEDIT_URL"
TOKEN_ENV = "AUTOEDIT_TOKEN"
DEFAULT_WAIT_SECONDS = 1800.0
STATUS_LIMIT = 20
GATEWAY_HELP = (
    f"move the media through this gateway's /uploads and /media with the token, no storage credentials "
    f"(default: ${GATEWAY_ENV}; without it: the store AUTOEDIT_STORAGE names); also the default --url"
)


# --------------------------------------------------------------------------------------- helpers


def _client(args: argparse.Namespace) -> AutoEditClient:
    url = args.url or os.environ.get(URL_ENV) or gateway_url(args) or DEFAULT_URL
    return AutoEditClient(url, _token(args), timeout=args.http_timeout)


def _token(args: argparse.Namespace) -> str | None:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    return token or None


def _progress(message: str) -> None:
    """Progress for people at a terminal; scripts see only the result on stdout."""
    if sys.stderr.isatty():
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _print_step(step: dict[str, Any]) -> None:
    """One line on stderr per finished step, as `submit --wait` follows the run."""
    took = (step.get("endTime") or 0.0) - (step.get("startTime") or step.get("endTime") or 0.0)
    print(f"step   {step['stepKey']:<32} {step['status']:<8} {took:6.1f} s", file=sys.stderr, flush=True)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """RemoteErrors become one line on stderr and their exit code, never a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except RemoteError as exc:
            print(f"autoedit: error: {exc}", file=sys.stderr)
            return exc.exit_code

    return run


# ---------------------------------------------------------------------------------------- submit


def _cmd_submit(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    name = (args.name or source.name).strip("/")
    upload_key(name)  # a bad name fails before anything is contacted
    transfer = open_transfer(args, _token(args), args.http_timeout)
    with _client(args) as client:
        client.ping()  # a bad URL or token fails here, before anything is uploaded
        uploaded = transfer.upload(source, name, args.replace)
        video_id = uploaded.video_id
        _progress(f"uploaded {source} -> {uploaded.uri} (video {video_id}); waiting for the upload sensor")
        try:
            result, failed = _follow_upload(client, args, video_id, uploaded.etag)
        except RemoteError as exc:  # the upload stays: say which video it became
            raise type(exc)(f"uploaded {source.name} as {video_id}, but {exc}") from None
        result = {"video_id": video_id, "upload_uri": uploaded.uri, "profile": args.profile, **result}
        if args.wait or failed:
            result.update(_outcome(client, getattr(transfer, "store", None), video_id, args.profile, result))
    if args.json:
        print_json(result)
    else:
        print(f"video  {video_id}")
        print(f"run    {result['run_id']}  {result['job']}  {result['status']}")
        if "profile_run_id" in result:
            print(f"run    {result['profile_run_id']}  {result['profile_job']}  {result['profile_status']}")
        for label in ("render", "checks", "fetch", "reason"):
            value = result.get(label)
            for i, line in enumerate(value if isinstance(value, list) else [value] if value else []):
                print(f"{label if i == 0 else '':<7}{line}")
    if failed:
        reason = f": {result['reason']}" if result.get("reason") else ""
        print(
            f"autoedit: error: a run for {video_id} did not succeed{reason}; see `autoedit status {video_id}`",
            file=sys.stderr,
        )
        return 1
    return 0


def _outcome(client: AutoEditClient, store: Any, video_id: str, profile: str, runs: dict[str, Any]) -> dict[str, Any]:
    """After the wait: where the render is (`render`), its checks (`checks`, a line per asset) and
    the `fetch` to run, or why a run failed (`reason`: the quarantine record's when the server has
    written it for our run and `store` can read it (None through the gateway), else the failed
    step's error the server reports). Two requests."""
    from autoedit_dagster.names import quarantine_key

    (video,) = client.video_status([video_id], known=True)
    outcome: dict[str, Any] = {}
    render = video["outputs"].get(profile, {}).get(RENDER_LABEL)
    if render:
        fetch = f"autoedit fetch {video_id}" + (f" --profile {profile}" if profile != DEFAULT_PROFILE else "")
        checks = {name: info for name, info in video["checks"].items() if name.startswith(f"{profile}/render:")}
        outcome.update(render=render, checks=check_summary(checks), fetch=f"{fetch} -o {video_id}-{profile}.mp4")
    ours = {runs.get("run_id"), runs.get("profile_run_id")} - {None}
    if {runs.get("status"), runs.get("profile_status")} & {"FAILURE", "CANCELED"}:
        reason = None
        if store is not None:
            with contextlib.suppress(Exception):  # the record is a nicety: the server's answer follows
                record = json.loads(store.read_bytes(quarantine_key(video_id)))
                reason = record["reason"] if record.get("run_id") in ours else None
        failure = video.get("failure") or {}
        reason = reason or (failure.get("reason") if failure.get("run_id") in ours else None)
        outcome["reason"] = one_line(reason or "the run was canceled or failed without a step error")
    return outcome


def _follow_upload(
    client: AutoEditClient, args: argparse.Namespace, video_id: str, etag: str
) -> tuple[dict[str, Any], bool]:
    """The sensor's run for the upload (and the profile's run); (result fields, whether a run failed)."""
    result: dict[str, Any] = {}
    run = client.wait_for_upload_run(video_id, etag, args.timeout)
    result.update(run_id=run.run_id, job=run.job_name, status=run.status)
    _progress(f"run {run.run_id} ({run.job_name}): {run.status}")
    on_step = _print_step if args.wait else None
    if args.wait or args.profile != DEFAULT_PROFILE:
        result["status"] = client.wait_for_run(
            run.run_id, args.timeout, lambda s: _progress(f"run {run.run_id} ({VIDEO_JOB}): {s}"), on_step
        )
    failed = result["status"] in ("FAILURE", "CANCELED")
    if args.profile != DEFAULT_PROFILE and not failed:
        job = profile_job_name(args.profile)
        profile_run = client.launch_run(job, video_id, {TAG_PROFILE: args.profile})
        result.update(profile_run_id=profile_run, profile_job=job, profile_status=client.run_status(profile_run))
        _progress(f"launched {job}: run {profile_run}")
        if args.wait:
            result["profile_status"] = client.wait_for_run(
                profile_run, args.timeout, lambda s: _progress(f"run {profile_run} ({job}): {s}"), on_step
            )
        failed = result["profile_status"] in ("FAILURE", "CANCELED")
    return result, failed


# ---------------------------------------------------------------------------------------- status


def _cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.video_id:
            (video,) = client.video_status([args.video_id])
            if args.json:
                print_json(video)
            else:
                print_video(video)
            return 0
        ids = client.newest_video_ids(args.limit)
        videos = client.video_status(ids, known=True)
    if args.json:
        print_json(videos)
    elif not videos:
        print("no videos yet: `autoedit submit FILE` or drop files into uploads/")
    else:
        print_table(videos)
    return 0


# ----------------------------------------------------------------------------------------- fetch


def _cmd_fetch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        (video,) = client.video_status([args.video_id])
    render = video["assets"].get(f"{args.profile}/render", {})
    outputs = video["outputs"].get(args.profile, {})
    if render.get("state") != "MATERIALIZED" or RENDER_LABEL not in outputs:
        run = video["latest_run"]
        latest = f"; latest run {run['run_id']} ({run['job']}) {run['status']}" if run else ""
        raise UsageError(
            f"{args.video_id} has no {args.profile} render (state {render.get('state', 'MISSING')}){latest}"
        )
    target = Path(args.output)
    if target.is_dir():
        target = target / f"{args.video_id}-{args.profile}.mp4"
    wanted = [(outputs[RENDER_LABEL], target)]
    if args.exports:
        missing = [label for label in EXPORT_LABELS if label not in outputs]
        if missing:
            raise UsageError(f"{args.video_id} has no {args.profile} exports ({', '.join(missing)} missing)")
        stem = target.name.removesuffix(target.suffix) if target.suffix else target.name
        wanted += [(outputs[label], target.with_name(stem + suffix)) for label, suffix in EXPORT_LABELS.items()]
    transfer = open_transfer(args, _token(args), args.http_timeout)
    for uri, path in wanted:
        transfer.download(args.video_id, args.profile, uri, path)
        print(path)
    return 0


# -------------------------------------------------------------------------------------- backfill


def _cmd_backfill(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.status:
            backfill_id = args.status
        else:
            job = backfill_job_name(args.profile, args.with_analysis)
            videos = None
            if not args.all:
                videos = list(dict.fromkeys(v.strip() for v in args.videos.split(",") if v.strip()))
                if not videos:
                    raise UsageError("--videos needs at least one video id")
            scope = "all videos" if videos is None else f"{len(videos)} video(s)"
            # A job backfill: one run per video (a bad video fails its own run only), created by the
            # daemon's submit threads at once. Every run carries the render tag the queue limits (the
            # job's own; the backfill's tags are copied onto each run too). The server refuses unknown
            # videos (PartitionKeysNotFoundError) before creating anything.
            backfill_id = client.launch_backfill(
                job,
                videos,
                title=f"autoedit {args.profile} backfill ({scope})",
                tags={TAG_PROFILE: args.profile, **RENDER_RUN_TAGS},
            )
            if not args.json:
                print(backfill_id, flush=True)
            _progress(f"backfill {backfill_id}: {job} over {scope}")
        if not (args.status or args.wait or args.json):
            return 0
        if args.wait:
            info = client.wait_for_backfill(backfill_id, args.timeout, lambda i: _progress(backfill_progress(i)))
        else:
            info = client.backfill(backfill_id)
    if args.json:
        print_json(info)
    else:
        print_backfill(info)
    if args.wait and info["status"] not in BACKFILL_SUCCEEDED:
        print(f"autoedit: error: backfill {backfill_id} ended {info['status']}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------- wiring


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server")
    server.add_argument(
        "--url", default=None, help=f"webserver or gateway URL (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    server.add_argument("--token", default=None, help=f"bearer token for the gateway (default: ${TOKEN_ENV})")
    server.add_argument(
        "--http-timeout", type=float, default=30.0, metavar="SECONDS", help="per-request timeout (default 30)"
    )
    return common


def add_remote_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `submit`, `status`, `fetch` and `backfill` to an `autoedit` subparsers object."""
    common = _common()

    s = subparsers.add_parser(
        "submit", parents=[common], help="upload a video and start its edit on the server",
        description="Upload FILE into uploads/ and print the video id and the upload sensor's run id.",
    )  # fmt: skip
    s.add_argument("file", metavar="FILE")
    s.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    s.add_argument("--wait", action="store_true",
                   help="follow the run(s) step by step to the end, then say where the render is (exit 1 and "
                   "the reason unless they succeed)")  # fmt: skip
    s.add_argument("--name", default=None, help="name under uploads/ (default: the file's name)")
    s.add_argument("--replace", action="store_true", help="upload again over an existing upload of that name")
    s.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS", help="give up waiting")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--gateway", default=None, metavar="URL", help=GATEWAY_HELP)
    s.set_defaults(run=_guarded(_cmd_submit))

    st = subparsers.add_parser(
        "status", parents=[common], help="runs, asset states, checks and outputs per video",
        description="Without VIDEO_ID: one line per video (newest first); with it: the details.",
    )  # fmt: skip
    st.add_argument("video_id", nargs="?", metavar="VIDEO_ID")
    st.add_argument("--json", action="store_true", help="print JSON (an object for VIDEO_ID, else a list)")
    st.add_argument("--limit", type=int, default=STATUS_LIMIT, help=f"newest N videos (default {STATUS_LIMIT}; 0: all)")
    st.set_defaults(run=_guarded(_cmd_status))

    f = subparsers.add_parser("fetch", parents=[common], help="download a video's render (and exports)")
    f.add_argument("video_id", metavar="VIDEO_ID")
    f.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    f.add_argument("-o", "--output", required=True, metavar="PATH", help="file, or a folder for <video>-<profile>.mp4")
    f.add_argument("--exports", action="store_true", help="also .fcpxml, .fcp7.xml, .edl, .otio.json beside PATH")
    f.add_argument("--gateway", default=None, metavar="URL", help=GATEWAY_HELP)
    f.set_defaults(run=_guarded(_cmd_fetch))

    b = subparsers.add_parser(
        "backfill", parents=[common], help="render a profile over many videos (partition backfill)",
        description="Launch a job backfill (one run per video) of a profile's job and print its id, "
        "or show one with --status.",
    )  # fmt: skip
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every video")
    which.add_argument("--videos", metavar="A,B", help="comma-separated video ids")
    which.add_argument("--status", metavar="ID", help="show backfill ID instead of launching one")
    b.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    b.add_argument("--with-analysis", action="store_true", help="also re-run ingest and analysis")
    b.add_argument("--wait", action="store_true", help="wait for the backfill to end; exit 1 unless it succeeded")
    b.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS", help="give up waiting")
    b.add_argument("--json", action="store_true", help="print the backfill as one JSON object")
    b.set_defaults(run=_guarded(_cmd_backfill))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoedit", description="AutoEditTATE remote commands.")
    add_remote_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The remote commands alone (`python -m autoedit_dagster.remote.commands`); `autoedit` wires the same."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("autoedit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for people, as `autoedit` does
        print(f"autoedit: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
