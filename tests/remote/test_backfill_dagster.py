"""`autoedit backfill`'s client against Dagster itself (the pinned schema and backfill code), no webserver:
its documents run in-process on a workspace of the real code location (its own code server), on a
test instance whose runs are queued and never executed. The daemon's backfill iteration creates the
runs, as `dagster-daemon` does.

What the fake server cannot show: the documents validate against the schema, `allPartitions` of a
job backfill is every `videos` partition at launch, unknown videos are refused before anything is
stored, each run is one video with the render tag, and an asset backfill launched by earlier
versions still reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration

from autoedit_dagster.remote.client import AutoEditClient
from autoedit_dagster.remote.errors import NotFound
from autoedit_dagster.remote.queries import LAUNCH_BACKFILL
from testsupport import graphql_inprocess as inprocess

pytestmark = pytest.mark.timeout(300)
VIDEOS = ["clip-00000000000000a1", "clip-00000000000000b2", "clip-00000000000000c3"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AutoEditClient, WorkspaceProcessContext]]:
    """The CLI's client answered by Dagster's GraphQL schema over the real code location."""
    root = tmp_path_factory.mktemp("backfill")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOEDIT_STORAGE", str(root / "storage"))  # the code server inherits it
        overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
        with (
            dg.instance_for_test(temp_dir=str(root), overrides=overrides) as instance,
            inprocess.served(instance) as process,
        ):
            instance.add_dynamic_partitions("videos", VIDEOS)
            with AutoEditClient("http://dagster.test", transport=inprocess.transport(instance, process)) as client:
                yield client, process


def test_job_backfill_of_every_video_one_run_each_with_the_render_tag(served) -> None:
    client, process = served
    instance = process.instance
    backfill_id = client.launch_backfill("square_job", None, tags={"autoedit/profile": "square"})
    stored = instance.get_backfill(backfill_id)
    assert stored is not None and not stored.is_asset_backfill
    assert sorted(stored.partition_names or ()) == VIDEOS  # allPartitions: the `videos` partitions at launch
    assert stored.partition_set_origin is not None
    assert stored.partition_set_origin.partition_set_name == "square_job_partition_set"

    before = client.backfill(backfill_id)
    assert (before["kind"], before["job"], before["status"]) == ("job", "square_job", "REQUESTED")
    assert before["partitions_by_status"] == {"NOT_STARTED": 3}
    assert client.backfill(backfill_id, full=False)["partitions"] is None  # what `--wait` polls

    list(execute_backfill_iteration(process, logging.getLogger("test_backfill_dagster")))
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert sorted(run.tags["dagster/partition"] for run in runs) == VIDEOS  # one video per run
    for run in runs:
        assert run.job_name == "square_job" and run.status == dg.DagsterRunStatus.QUEUED
        assert run.tags["autoedit/kind"] == "render" and run.tags["autoedit/profile"] == "square"
    after = client.backfill(backfill_id)
    assert after["partitions_by_status"] == {"QUEUED": 3}
    assert sorted(run["video_id"] for run in after["runs"]) == VIDEOS


def test_selected_videos_and_unknown_ones(served) -> None:
    client, process = served
    backfill_id = client.launch_backfill("yoko_video_job", VIDEOS[:1])
    assert process.instance.get_backfill(backfill_id).partition_names == VIDEOS[:1]
    count = len(process.instance.get_backfills())
    with pytest.raises(NotFound, match=r"^unknown video: nope-00000000$"):
        client.launch_backfill("tate_job", [VIDEOS[0], "nope-00000000"])
    assert len(process.instance.get_backfills()) == count  # nothing stored


@pytest.mark.filterwarnings("ignore:Function `AssetSelection.sources` is deprecated:DeprecationWarning")  # Dagster's
def test_an_asset_backfill_launched_before_still_reads(served) -> None:
    """What `autoedit backfill --videos V --profile yoko` launched before it launched job backfills."""
    client, _ = served
    params = {
        "assetSelection": [{"path": ["yoko", "edit_timeline"]}, {"path": ["yoko", "render"]}],
        "partitionNames": VIDEOS[1:2],
        "tags": [{"key": "autoedit/kind", "value": "render"}],
    }
    answer = client.execute(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    info = client.backfill(answer["backfillId"])
    assert (info["kind"], info["partitions"], info["partitions_by_status"]) == ("asset", VIDEOS[1:2], {})
    assert info["assets"]["yoko/render"]["targeted"] == 1
