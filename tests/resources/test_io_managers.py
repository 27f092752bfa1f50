"""IO managers round-trip polars tables and pydantic values through `materialize`, on both stores."""

import io
import json

import dagster as dg
import polars as pl
import pydantic
import pytest

from autoedit_dagster.partitions import videos
from autoedit_dagster.resources import MediaStore, build_resources

VIDEO = "interview-1a2b3c4d"
OTHER = "beach-deadbeef"


class Segment(pydantic.BaseModel):
    start: float
    end: float
    label: str = "speech"


class Report(pydantic.BaseModel):
    video_id: str
    segments: list[Segment]


@dg.asset(partitions_def=videos, io_manager_key="parquet_io_manager")
def frames(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame({"time": [0.0, 0.5, 1.0], "video": [context.partition_key] * 3})


@dg.asset(partitions_def=videos, io_manager_key="json_io_manager")
def segments(frames: pl.DataFrame) -> list[Segment]:
    return [Segment(start=t, end=t + 0.5) for t in frames["time"].to_list()]


@dg.asset(partitions_def=videos, io_manager_key="json_io_manager")
def report(context: dg.AssetExecutionContext, segments: list[Segment]) -> Report:
    return Report(video_id=context.partition_key, segments=segments)


@dg.asset(partitions_def=videos, io_manager_key="json_io_manager", deps=[report])
def report_echo(context: dg.AssetExecutionContext, store: MediaStore) -> None:
    """Returns nothing: the IO manager must write nothing either."""


@dg.asset(io_manager_key="parquet_io_manager")
def video_catalog(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return pl.DataFrame({"video": sorted(frames), "rows": [frames[k].height for k in sorted(frames)]})


@dg.asset(io_manager_key="json_io_manager")
def report_index(report: dict[str, Report]) -> dict[str, int]:
    return {key: len(value.segments) for key, value in report.items()}


@dg.asset(partitions_def=videos, io_manager_key="json_io_manager", ins={"report": dg.AssetIn()})
def unannotated_consumer(report) -> None:  # type: ignore[no-untyped-def]
    # No annotation here: the IO manager falls back to the upstream's declared return type.
    assert isinstance(report, Report)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(videos.name, [VIDEO, OTHER])
    return instance


def _parquet(store: MediaStore, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.read_bytes(key)))


def test_partitioned_tables_and_models_round_trip(store: MediaStore, instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [frames, segments, report, report_echo, unannotated_consumer],
        partition_key=VIDEO,
        instance=instance,
        resources=build_resources(store),
    )
    assert result.success
    written = {obj.key for obj in store.list()}
    assert written == {
        f"work/{VIDEO}/frames.parquet",
        f"work/{VIDEO}/segments.json",
        f"work/{VIDEO}/report.json",
    }
    assert _parquet(store, f"work/{VIDEO}/frames.parquet")["video"].to_list() == [VIDEO] * 3
    # Plain model JSON, readable by any client.
    saved = json.loads(store.read_bytes(f"work/{VIDEO}/report.json"))
    assert saved["video_id"] == VIDEO
    assert saved["segments"][1] == {"start": 0.5, "end": 1.0, "label": "speech"}
    # Loaded back as models (the downstream asset received list[Segment], then built a Report).
    assert result.output_for_node("report") == Report(
        video_id=VIDEO, segments=[Segment(start=t, end=t + 0.5) for t in (0.0, 0.5, 1.0)]
    )
    metadata = result.asset_materializations_for_node("segments")[0].metadata
    assert metadata["model"].value == f"{Segment.__module__}:Segment"
    assert metadata["uri"].value == store.uri(f"work/{VIDEO}/segments.json")
    frames_metadata = result.asset_materializations_for_node("frames")[0].metadata
    assert frames_metadata["dagster/row_count"].value == 3


def test_unpartitioned_assets_fan_in_all_partitions(store: MediaStore, instance: dg.DagsterInstance) -> None:
    resources = build_resources(store)
    for video in (VIDEO, OTHER):
        assert dg.materialize(
            [frames, segments, report], partition_key=video, instance=instance, resources=resources
        ).success
    result = dg.materialize(
        [frames, segments, report, video_catalog, report_index],
        selection=[video_catalog, report_index],
        instance=instance,
        resources=resources,
    )
    assert result.success
    catalog = _parquet(store, "catalog/video_catalog.parquet")
    assert catalog.to_dicts() == [{"video": OTHER, "rows": 3}, {"video": VIDEO, "rows": 3}]
    assert json.loads(store.read_bytes("catalog/report_index.json")) == {VIDEO: 3, OTHER: 3}


def test_missing_partition_fails_the_fan_in(local_store: MediaStore, instance: dg.DagsterInstance) -> None:
    resources = build_resources(local_store)
    assert dg.materialize([frames], partition_key=VIDEO, instance=instance, resources=resources).success
    result = dg.materialize(
        [frames, video_catalog],
        selection=[video_catalog],
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    assert not local_store.exists("catalog/video_catalog.parquet")


def test_rematerializing_overwrites_in_place(local_store: MediaStore, instance: dg.DagsterInstance) -> None:
    resources = build_resources(local_store)
    for _ in range(2):
        assert dg.materialize([frames], partition_key=VIDEO, instance=instance, resources=resources).success
    assert [obj.key for obj in local_store.list("work/")] == [f"work/{VIDEO}/frames.parquet"]


def test_partition_keys_that_would_escape_the_folder_are_refused(local_store: MediaStore) -> None:
    loose = dg.DynamicPartitionsDefinition(name="loose")

    @dg.asset(partitions_def=loose, io_manager_key="parquet_io_manager")
    def escaping() -> pl.DataFrame:
        return pl.DataFrame({"a": [1]})

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("loose", [".."])
    result = dg.materialize(
        [escaping],
        partition_key="..",
        instance=instance,
        resources=build_resources(local_store),
        raise_on_error=False,
    )
    assert not result.success
    assert list(local_store.list()) == []
