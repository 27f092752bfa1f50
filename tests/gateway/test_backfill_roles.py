"""`autoedit backfill` through the gateway: what each role may do with the CLI's backfill documents.

The gateway in front of the remote tests' fake Dagster (canned answers, every request recorded):
an operator's CLI finds the job's code location and launches a job backfill naming only it; a
viewer's CLI reads a backfill's status but its launch is refused at the gateway (never reaching
the webserver); a token without a role reaches no GraphQL at all.
"""

from __future__ import annotations

import pytest

from autoedit_dagster.gateway.tokens import mint_token
from autoedit_dagster.remote import commands as remote
from autoedit_dagster.remote.queries import BACKFILL, BACKFILL_TARGETS, LAUNCH_BACKFILL
from tests.remote.conftest import LOCATION, fake  # noqa: F401 (the fake webserver fixture)

from .conftest import SECRET, bearer, token


def _backfill(gateway: str, bearer_token: str, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = remote.main(["backfill", *options, "--url", gateway, "--token", bearer_token])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_operator_launches_a_job_backfill_of_this_location_only(start_gateway, fake, capsys) -> None:  # noqa: F811
    gateway = start_gateway(fake.url)
    code, output = _backfill(gateway, token("operator"), capsys, "--all", "--profile", "yoko", "--with-analysis")
    assert (code, output) == (0, "bf1\n")
    (launch,) = fake.find("launchPartitionBackfill")
    assert "authorization" not in launch.headers  # the gateway keeps the token to itself
    selector = launch.body["variables"]["params"]["selector"]
    assert selector["repositorySelector"]["repositoryLocationName"] == LOCATION  # never the other location's
    assert selector["partitionSetName"] == "yoko_video_job_partition_set"
    code, output = _backfill(gateway, token("operator"), capsys, "--status", "bf1")
    assert code == 0 and "progress 1 SUCCESS" in output


def test_viewer_reads_backfills_but_may_not_launch_one(start_gateway, fake, capsys, client) -> None:  # noqa: F811
    gateway = start_gateway(fake.url)
    viewer = token("viewer")
    code, output = _backfill(gateway, viewer, capsys, "--status", "bf1")
    assert code == 0 and "progress 1 SUCCESS" in output
    code, output = _backfill(gateway, viewer, capsys, "--videos", "talk-1a2b3c4d")
    assert code == 2 and "403 Forbidden" in output and output.count("\n") == 1, output
    assert fake.find("AutoeditBackfillTargets")  # the lookup is a query a viewer may make...
    assert not fake.find("launchPartitionBackfill")  # ...the launch never reached the webserver
    # The documents themselves, as any client could send them.
    for document, status in ((BACKFILL_TARGETS, 200), (BACKFILL, 200), (LAUNCH_BACKFILL, 403)):
        response = client.post(f"{gateway}/graphql", json={"query": document, "variables": {}}, headers=bearer(viewer))
        assert response.status_code == status, (document[:40], response.text)


def test_a_metrics_token_reaches_no_backfill(start_gateway, fake, capsys) -> None:  # noqa: F811
    gateway = start_gateway(fake.url)
    scraper = mint_token(SECRET, None, subject="prometheus", scopes=("metrics",))
    code, output = _backfill(gateway, scraper, capsys, "--status", "bf1")
    assert code == 2 and "403" in output
    assert not fake.requests
