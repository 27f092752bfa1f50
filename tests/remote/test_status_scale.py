"""`autoedit status` against a real dagster-webserver: what it asks costs the videos asked, not the archive.

The instance holds a small simulated archive (testsupport/archive.py: processed videos and a queued
one, nothing rendered). Counted here: the requests and bytes `status` moves, its paging through
the videos, the check results of the oldest video, and that the command never imports Dagster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autoedit_dagster.remote import client as client_module
from autoedit_dagster.remote import commands as remote
from testsupport.archive import CHECKS, seed_archive, video_ids
from testsupport.servers import REPO, Instance, Server, Servers

DONE = video_ids(5)
QUEUED = video_ids(1, start=5)
# A single video's status: one document for its assets and runs, one for its checks.
SINGLE_VIDEO_REQUESTS = 2


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Instance.create(tmp_path_factory.mktemp("archive"))
    with instance.open() as dagster_instance:
        seed_archive(dagster_instance, DONE, QUEUED, storage=str(instance.storage))
    with Servers(instance) as servers:
        server = servers.start_webserver()  # no daemon: the queued run stays queued
        servers.wait_webserver(server)
        yield server


class Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.received = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content)["query"].split("{", 1)[0].strip())
        response = super().handle_request(request)
        response.read()
        self.received += len(response.content)
        return response


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counting:
    """The CLI's client sends through a counting transport, with pages of 2 videos to see the paging."""
    transport = Counting()
    make = client_module.AutoEditClient

    def client(args) -> client_module.AutoEditClient:
        made = make(args.url, None, transport=transport)
        made.status_page = made.id_page = 2
        return made

    monkeypatch.setattr(remote, "_client", client)
    return transport


def _status(capsys: pytest.CaptureFixture[str], *argv: str):
    capsys.readouterr()
    code = remote.main(["status", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_one_video_costs_two_small_requests(webserver: Server, counted: Counting, capsys) -> None:
    oldest = _status(capsys, DONE[0], "--url", webserver.url)
    assert counted.requests == ["query AutoeditVideoAssets($partitions: [String!])", "query AutoeditChecks"]
    assert len(counted.requests) == SINGLE_VIDEO_REQUESTS
    assert len(oldest["assets"]) >= 20  # every asset of every profile, still two requests (was one per asset)
    assert counted.received < 40_000  # one video's assets, runs and checks; not the archive's ids
    assert oldest["assets"]["tate/render"]["state"] == "MATERIALIZED"
    assert oldest["assets"]["square/render"]["state"] == "MISSING"
    # The oldest video's check results, read from the log of the run that rendered it, however many came after.
    assert sorted(oldest["checks"]) == sorted(f"tate/render:{check}" for check in CHECKS)
    assert all(check["passed"] is True for check in oldest["checks"].values())
    assert oldest["outputs"]["tate"]["video"].endswith(f"/renders/{DONE[0]}/tate/final.mp4")
    assert oldest["latest_run"]["status"] == "SUCCESS"

    counted.requests.clear()
    queued = _status(capsys, QUEUED[0], "--url", webserver.url)
    assert len(counted.requests) == SINGLE_VIDEO_REQUESTS - 1  # nothing materialized: no checks to read
    assert queued["latest_run"]["status"] == "QUEUED"
    assert queued["assets"]["tate/render"]["state"] == "MATERIALIZING"


def test_unknown_video_is_looked_up_in_pages(webserver: Server, counted: Counting, capsys) -> None:
    code = remote.main(["status", "nope-0123456789abcdef", "--url", webserver.url])
    assert code == 2
    assert "unknown video: nope-0123456789abcdef" in capsys.readouterr().err
    # the video's document, then the 6 ids two at a time
    assert counted.requests[0].startswith("query AutoeditVideoAssets")
    assert counted.requests[1:] == ["query AutoeditVideoIds($keys: [AssetKeyInput!], $limit: Int!, "
                                    "$ascending: Boolean!, $cursor: String)"] * 3  # fmt: skip


def test_limit_pages_through_the_archive(webserver: Server, counted: Counting, capsys) -> None:
    newest = _status(capsys, "--limit", "3", "--url", webserver.url)
    assert [video["video_id"] for video in newest] == [*QUEUED, *reversed(DONE)][:3]
    # ids: pages of 2 (2 + 1); status: pages of 2 videos (2 + 1), each an assets+runs and a checks
    # document; the page holding the queued video also asks its assets' latest planned runs.
    kinds = [query.split("(")[0].split(" {")[0] for query in counted.requests]
    assert kinds == ["query AutoeditVideoIds"] * 2 + [
        "query AutoeditVideoAssets", "query AutoeditPlannedRuns", "query AutoeditChecks",
        "query AutoeditVideoAssets", "query AutoeditChecks",
    ]  # fmt: skip
    assert newest[0]["assets"]["tate/render"]["state"] == "MATERIALIZING"
    assert newest[1]["assets"]["tate/render"]["state"] == "MATERIALIZED"

    counted.requests.clear()
    everything = _status(capsys, "--limit", "0", "--url", webserver.url)
    assert [video["video_id"] for video in everything] == [*QUEUED, *reversed(DONE)]
    assert len(counted.requests) == 3 + 3 * 2 + 1  # no request holds more than two videos
    assert all(len(video["checks"]) == len(CHECKS) for video in everything if video["video_id"] in DONE)


def test_status_never_imports_dagster(webserver: Server) -> None:
    """The whole command in a fresh interpreter: neither Dagster nor the gateway is imported."""
    script = (
        "import sys\n"
        "from autoedit_dagster.cli import main\n"
        f"code = main(['status', {DONE[0]!r}, '--url', {webserver.url!r}, '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_graphql', 'gql')"
        " or m == 'autoedit_dagster.gateway.app')\n"
        "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(REPO), env=env, capture_output=True, text=True)
    assert "HEAVY [] CODE 0" in done.stderr, done.stderr
    assert json.loads(done.stdout)["video_id"] == DONE[0]
