"""Fixtures for the remote CLI: a fake GraphQL server that records requests, the CLI run in-process,
storage on both backends, and a real deployment (dagster-webserver + dagster-daemon) on loopback.

The fake server speaks just enough of dagster-webserver's GraphQL (canned answers by operation
name) to test what the client sends (the bearer token, launch variables) and how it words
failures (401/403/429/5xx, GraphQL errors). The real deployment runs against a temporary
DAGSTER_HOME (a copy of deploy/dagster.local.yaml) and temporary AUTOEDIT_STORAGE; both processes
live in their own process groups and are always stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from autoedit_dagster.remote import commands as remote
from autoedit_dagster.remote.client import AutoEditClient
from autoedit_dagster.remote.errors import RemoteError
from autoedit_dagster.resources import MediaStore, media_store_from_env
from testsupport.servers import binary, env_vars, free_port, make_clip  # noqa: F401 (re-exported to the tests)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VIDEO_ID = "talk-1a2b3c4d"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # dagster-graphql 1.13 calls gql 4's deprecated `execute(..., variable_values=)`: not ours to fix.
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"))


# -------------------------------------------------------------------------- fake GraphQL server

Answer = dict[str, Any] | Callable[[dict[str, Any], str], dict[str, Any]]


def _run(run_id: str, job: str, status: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "runId": run_id,
        "jobName": job,
        "status": status,
        "creationTime": 1000.0,
        "startTime": 1001.0,
        "endTime": 1010.0 if status in ("SUCCESS", "FAILURE") else None,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }


def _node(path: list[str], group: str, checks: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "assetKey": {"path": path},
        "groupName": group,
        "isPartitioned": True,
        "assetChecksOrError": {"__typename": "AssetChecks", "checks": [{"name": c} for c in checks]},
    }


ASSET_NODES = [
    _node(["source_video"], "ingest"),
    _node(["media_analysis"], "analysis"),
    _node(["tate", "render"], "tate", ("size_matches_profile",)),
    _node(["yoko", "edit_timeline"], "yoko"),
    _node(["yoko", "render"], "yoko", ("size_matches_profile",)),
]


def materialized_node(
    path: list[str], group: str, run_id: str, entries: dict[str, str], checks: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An `AutoeditVideoAssets` asset node, materialized for VIDEO_ID by `run_id` (created at 1000.0)."""
    return {
        "assetKey": {"path": path},
        "groupName": group,
        "isPartitioned": True,
        "assetChecksOrError": {"__typename": "AssetChecks", "checks": [{"name": c} for c in checks]},
        "r0": {"runId": run_id, "status": "SUCCESS"},
        "latestMaterializationByPartition": [
            {
                "runId": run_id,
                "timestamp": "1005000",
                "partition": VIDEO_ID,
                "runOrError": {"__typename": "Run", "creationTime": 1000.0},
                "metadataEntries": [
                    {"label": label, "__typename": "PathMetadataEntry", "path": path} for label, path in entries.items()
                ],
            }
        ],
    }


def _runs_answer(variables: dict[str, Any], _query: str) -> dict[str, Any]:
    """The run the upload sensor would have made, carrying exactly the tags asked for."""
    tags = {t["key"]: t["value"] for t in variables["filter"]["tags"]}
    return {"runsOrError": {"__typename": "Runs", "results": [_run("run-1", "video_job", "QUEUED", tags)]}}


def video_assets_answer(nodes: list[dict[str, Any]]) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    """An `AutoeditVideoAssets` answer: these asset nodes, and the sensor's run for VIDEO_ID (no other video's)."""

    def answer(variables: dict[str, Any], _query: str) -> dict[str, Any]:
        data: dict[str, Any] = {"assetNodes": nodes}
        for i, video_id in enumerate(variables["partitions"]):
            runs = (
                [_run("run-1", "video_job", "SUCCESS", {"dagster/partition": video_id})] if video_id == VIDEO_ID else []
            )
            data[f"v{i}p"] = {"__typename": "Runs", "results": runs}
            data[f"v{i}b"] = {"__typename": "Runs", "results": []}
        return data

    return answer


def _checks_answer(_variables: dict[str, Any], query: str) -> dict[str, Any]:
    """Runs whose logs hold no check event."""
    return {f"l{i}": {"events": []} for i in range(query.count("logsForRun("))}


def run_steps_answer(status: str, steps: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """An `AutoeditRunSteps` answer: the run's status and its (step key, status) in order, a second apart."""
    stats = [
        {"stepKey": key, "status": step_status, "startTime": 1001.0 + i, "endTime": 1001.5 + i}
        for i, (key, step_status) in enumerate(steps)
    ]
    return {"runOrError": {"__typename": "Run", "runId": "run-1", "status": status, "stepStats": stats}}


LOCATION = "autoedit_dagster.definitions:defs"
# Our code location's partitioned jobs, and another location's (a backfill must never name it).
BACKFILL_REPOSITORIES = [
    {
        "name": "__repository__",
        "location": {"name": LOCATION},
        "partitionSets": [
            {"name": f"{job}_partition_set", "pipelineName": job}
            for job in ("video_job", "tate_job", "square_job", "yoko_job", "square_video_job", "yoko_video_job")
        ],
    },
    {
        "name": "__repository__",
        "location": {"name": "elsewhere"},
        "partitionSets": [{"name": "elsewhere_job_partition_set", "pipelineName": "elsewhere_job"}],
    },
]


def _launch_backfill_answer(variables: dict[str, Any], _query: str) -> dict[str, Any]:
    """`launchPartitionBackfill` as the webserver answers a job backfill: unknown videos refused."""
    unknown = sorted(set(variables["params"].get("partitionNames") or ()) - {VIDEO_ID})
    if unknown:
        message = f"Partition keys `{unknown}` could not be found."
        return {"launchPartitionBackfill": {"__typename": "PartitionKeysNotFoundError", "message": message,
                                            "partitionKeys": unknown}}  # fmt: skip
    return {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": "bf1"}}


def job_backfill_answer(counts: dict[str, int], status: str = "COMPLETED_SUCCESS") -> dict[str, Any]:
    """An `AutoeditBackfillStatus` answer for a job backfill of `yoko_job` over VIDEO_ID (names and runs only
    when the query asks for them, as `@include(if: $full)` does)."""

    def answer(variables: dict[str, Any], _query: str) -> dict[str, Any]:
        full = variables.get("full", True)
        backfill = {
            "__typename": "PartitionBackfill", "id": "bf1", "status": status, "title": "autoedit yoko backfill",
            "numPartitions": sum(counts.values()), "timestamp": 1000.0, "endTimestamp": 1020.0,
            "isAssetBackfill": False, "partitionSetName": "yoko_job_partition_set", "jobName": "yoko_job",
            "error": None, "partitionStatusCounts": [{"runStatus": k, "count": v} for k, v in counts.items()],
            "assetBackfillData": None,
        }  # fmt: skip
        if full:
            backfill["partitionNames"] = [VIDEO_ID]
            backfill["runs"] = [_run("run-9", "yoko_job", "SUCCESS", {"dagster/partition": VIDEO_ID})]
        return {"partitionBackfillOrError": backfill}

    return answer


def default_answers() -> dict[str, Answer]:
    return {
        "AutoeditPing": {"version": "1.13.27"},
        "AutoeditAssetNodes": {"assetNodes": ASSET_NODES},
        "AutoeditVideoIds": {
            "assetNodes": [
                {
                    "assetKey": {"path": ["source_video"]},
                    "partitionKeyConnection": {"results": [VIDEO_ID], "cursor": "c", "hasMore": False},
                }
            ]
        },
        "AutoeditVideoAssets": video_assets_answer([]),
        "AutoeditRuns": _runs_answer,
        "AutoeditChecks": _checks_answer,
        "AutoeditBackfillTargets": {
            "repositoriesOrError": {"__typename": "RepositoryConnection", "nodes": BACKFILL_REPOSITORIES}
        },
        "AutoeditBackfill(": _launch_backfill_answer,
        "AutoeditBackfillStatus": job_backfill_answer({"SUCCESS": 1}),
        # dagster-graphql's own documents (dagster_graphql/client/client_queries.py)
        "GraphQLClientGetJobNames": {
            "repositoriesOrError": {
                "__typename": "RepositoryConnection",
                "nodes": [
                    {
                        "name": "__repository__",
                        "location": {"name": "autoedit_dagster.definitions:defs"},
                        "pipelines": [{"name": "video_job"}, {"name": "square_job"}, {"name": "yoko_job"}],
                    }
                ],
            }
        },
        "GraphQLClientSubmitRun": {
            "launchPipelineExecution": {"__typename": "LaunchRunSuccess", "run": {"runId": "run-2"}}
        },
        "AutoeditRunSteps": run_steps_answer("SUCCESS"),
    }


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]

    @property
    def query(self) -> str:
        return self.body.get("query", "")


@dataclass
class FakeDagster:
    """A loopback HTTP server with canned GraphQL answers; records every request."""

    url: str = ""
    answers: dict[str, Answer] = field(default_factory=default_answers)
    requests: list[Recorded] = field(default_factory=list)
    # When set, every request gets this status (and headers/body) instead of an answer.
    status: int | None = None
    reply_headers: dict[str, str] = field(default_factory=dict)
    reply_body: bytes | None = None
    # Replies given first, one per request, before any of the above (e.g. a 429 then the answer).
    replies_first: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if self.replies_first:
            return self.replies_first.pop(0)
        if self.status is not None:
            return self.status, self.reply_headers, self.reply_body or b""
        query = body.get("query", "")
        for marker, answer in self.answers.items():
            if marker in query:
                data = answer(body.get("variables") or {}, query) if callable(answer) else answer
                return 200, {}, json.dumps({"data": data}).encode()
        return 200, {}, json.dumps({"errors": [{"message": f"no canned answer for {query[:60]!r}"}]}).encode()

    def find(self, marker: str) -> list[Recorded]:
        return [r for r in self.requests if marker in r.query]


@pytest.fixture
def fake() -> Iterator[FakeDagster]:
    server_state = FakeDagster()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            server_state.requests.append(Recorded(self.path, headers, body))
            status, extra, payload = server_state.answer(body)
            self.send_response(status)
            self.send_header("Content-Type", extra.get("Content-Type", "application/json"))
            for name, value in extra.items():
                if name != "Content-Type":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------- CLI in-process


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run `autoedit <remote command>` in-process; the server and token come only from the arguments."""
    monkeypatch.delenv("AUTOEDIT_URL", raising=False)
    monkeypatch.delenv("AUTOEDIT_TOKEN", raising=False)

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = remote.main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(params=["local", "s3"])
def remote_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MediaStore:
    """AUTOEDIT_STORAGE set to a temp folder or a fresh moto bucket (fake credentials: the autouse
    `fake_aws_credentials`); the store the CLI will use."""
    if request.param == "local":
        monkeypatch.setenv("AUTOEDIT_STORAGE", str(tmp_path / "storage"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        monkeypatch.setenv("AUTOEDIT_STORAGE", f"s3://{request.getfixturevalue('s3_bucket')}/team/autoedit")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return media_store_from_env()


# ---------------------------------------------------------------------------------- deployment


@dataclass
class Deployment:
    url: str
    home: Path
    storage: Path
    logs: dict[str, Path]

    def tail(self, lines: int = 25) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process group this fixture created (the server, its code server, run workers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Children (code servers, run workers) may outlive the leader: the whole group goes.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """dagster-daemon and dagster-webserver on a free loopback port, on a temp instance and storage."""
    root = tmp_path_factory.mktemp("deployment")
    home, storage = root / "dagster_home", root / "storage"
    home.mkdir()
    storage.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    # Create the SQLite storages once, here: two processes creating them at the same moment race in
    # alembic's revision check and one of them dies.
    with env_vars({"DAGSTER_HOME": str(home)}), dg.DagsterInstance.get():
        pass
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOEDIT_", "DAGSTER_", "AWS_"))}
    env.update(DAGSTER_HOME=str(home), AUTOEDIT_STORAGE=str(storage), PYTHONUNBUFFERED="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = {"daemon": root / "daemon.log", "webserver": root / "webserver.log"}
    commands = {
        # The daemon first: its sensor and backfill loops start ticking while the webserver loads.
        "daemon": [binary("dagster-daemon"), "run", "-w", "workspace.yaml"],
        "webserver": [binary("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
    }
    procs: list[subprocess.Popen[bytes]] = []
    deployment = Deployment(url=url, home=home, storage=storage, logs=logs)
    try:
        for name, command in commands.items():
            with logs[name].open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        _wait_ready(deployment, procs, timeout=120.0)
        yield deployment
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_ready(deployment: Deployment, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Until /server_info answers and the code location is loaded (the `videos` source asset is served)."""
    deadline = time.monotonic() + timeout
    with AutoEditClient(deployment.url, timeout=5.0) as client:
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{deployment.tail()}")
            try:
                if httpx.get(f"{deployment.url}/server_info", timeout=2.0).status_code == 200:
                    client.video_id_page(1)
                    return
            except (httpx.HTTPError, RemoteError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the webserver did not come up in {timeout:.0f} s:\n{deployment.tail()}")
            time.sleep(0.5)
