"""Upload sensor against a real local folder and a moto S3 server, through `build_sensor_context`."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from autoedit_dagster.names import TAG_UPLOAD_ETAG, TAG_UPLOAD_KEY, TAG_VIDEO_ID, id_claim_key, is_video_upload
from autoedit_dagster.partitions import legacy_video_id_for_upload, video_id_for_upload, videos
from autoedit_dagster.resources import LocalMediaStore, MediaStore
from autoedit_dagster.resources.media_store import StoredObject
from autoedit_dagster.sensors import UploadCursor, build_quarantine_sensor, build_upload_sensor, plan_uploads
from autoedit_dagster.sensors.upload_sensor import PENDING_MAX, RangeSummary, _digest, _key_digest
from tests.sensors.test_video_ids import COLLIDING


@dg.asset(partitions_def=videos)
def ingested(context: dg.AssetExecutionContext) -> None:
    """Stands in for the real per-video assets."""
    context.add_output_metadata({"video": context.partition_key})


ingest = dg.define_asset_job("ingest", selection=[ingested])


class Clock:
    """A settable clock: uploads are 'old enough' without sleeping."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def tick(
    sensor: dg.SensorDefinition, store: MediaStore, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"store": store})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def added(result: dg.SensorResult) -> list[str]:
    return [key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys]


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


UPLOADS = ["uploads/a.mp4", "uploads/B Roll.MOV", "uploads/day1/c.mkv"]
IGNORED = [
    "uploads/notes.txt",
    "uploads/.hidden.mp4",
    "uploads/d.mp4.part",
    "uploads/e.mp4.crdownload",
    "uploads/~f.mp4",
    "uploads/g.tmp",
    "uploads/.sync/h.mp4",
    "uploads/i.MP4.PART",
    "work/not-an-upload.mp4",
    "renders/x/tate/final.mp4",
]


def test_first_tick_requests_one_run_per_finished_video(store: MediaStore, instance: dg.DagsterInstance) -> None:
    for key in UPLOADS + IGNORED:
        store.write_bytes(key, b"video bytes " + key.encode())
    sensor = build_upload_sensor(ingest, clock=Clock(60))
    result = tick(sensor, store, instance, None)

    expected = {video_id_for_upload(key): key for key in UPLOADS}
    assert len(result.run_requests) == 3
    assert {r.partition_key for r in result.run_requests} == set(expected)
    for request in result.run_requests:
        key = expected[request.partition_key]
        etag = store.stat(key).etag
        assert request.run_key == f"{request.partition_key}:{etag}"
        assert request.tags[TAG_UPLOAD_KEY] == key
        assert request.tags[TAG_VIDEO_ID] == request.partition_key
        assert request.tags[TAG_UPLOAD_ETAG] == etag
    assert sorted(added(result)) == sorted(expected)
    assert result.dynamic_partitions_requests[0].partitions_def_name == "videos"
    cursor = json.loads(result.cursor)
    assert cursor["v"] == 2 and cursor["n"] == 3 and cursor["pending"] == {}  # the three, summed
    # Nothing was written to the instance: the daemon applies the result.
    assert instance.get_dynamic_partitions("videos") == []

    # Idempotent: the next tick with the new cursor finds nothing.
    again = tick(sensor, store, instance, result.cursor)
    assert again.run_requests == [] and added(again) == []
    assert again.skip_reason is not None
    assert json.loads(again.cursor) == cursor


def test_cap_per_tick_defers_the_rest(store: MediaStore, instance: dg.DagsterInstance) -> None:
    keys = [f"uploads/clip{i}.mp4" for i in range(5)]
    for key in keys:
        store.write_bytes(key, key.encode())
    sensor = build_upload_sensor(ingest, max_runs_per_tick=2, clock=Clock(60))
    cursor, seen, counts = None, [], []
    for _ in range(4):
        result = tick(sensor, store, instance, cursor)
        cursor = result.cursor
        counts.append(len(result.run_requests))
        seen += [r.partition_key for r in result.run_requests]
    assert counts == [2, 2, 1, 0]
    assert sorted(seen) == sorted(video_id_for_upload(k) for k in keys)


def test_young_uploads_wait_until_settled(store: MediaStore, instance: dg.DagsterInstance) -> None:
    clock = Clock(0)
    sensor = build_upload_sensor(ingest, settle_seconds=30, clock=clock)
    store.write_bytes("uploads/new.mp4", b"x")
    first = tick(sensor, store, instance, None)
    assert first.run_requests == []
    assert list(json.loads(first.cursor)["pending"]) == [_key_digest("uploads/new.mp4")]
    clock.offset = 60
    second = tick(sensor, store, instance, first.cursor)
    assert [r.tags[TAG_UPLOAD_KEY] for r in second.run_requests] == ["uploads/new.mp4"]
    assert json.loads(second.cursor)["pending"] == {}


def test_growing_local_file_waits_until_unchanged(local_store: LocalMediaStore, instance: dg.DagsterInstance) -> None:
    path = Path(local_store.root) / "uploads" / "copying.mp4"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 1000)
    clock = Clock(0)
    sensor = build_upload_sensor(ingest, settle_seconds=5, clock=clock)
    cursor = tick(sensor, local_store, instance, None).cursor  # too young
    with path.open("ab") as handle:  # the copy goes on
        handle.write(b"y" * 1000)
    clock.offset = 10
    growing = tick(sensor, local_store, instance, cursor)
    assert growing.run_requests == []
    assert json.loads(growing.cursor)["pending"][_key_digest("uploads/copying.mp4")][0] == 2000
    clock.offset = 20  # unchanged since the last tick and old enough
    done = tick(sensor, local_store, instance, growing.cursor)
    assert [r.tags[TAG_UPLOAD_KEY] for r in done.run_requests] == ["uploads/copying.mp4"]


def test_reupload_gets_a_new_run_but_never_a_second_partition(store: MediaStore, instance: dg.DagsterInstance) -> None:
    sensor = build_upload_sensor(ingest, clock=Clock(60))
    store.write_bytes("uploads/take.mp4", b"first version")
    first = tick(sensor, store, instance, None)
    video_id = video_id_for_upload("uploads/take.mp4")
    assert added(first) == [video_id]
    instance.add_dynamic_partitions("videos", added(first))  # what the daemon does with the result

    store.write_bytes("uploads/take.mp4", b"second, longer version")
    second = tick(sensor, store, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [video_id]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert added(second) == []

    # A lost cursor re-requests the same run key (the daemon drops it) and adds no partition.
    reset = tick(sensor, store, instance, None)
    assert [r.run_key for r in reset.run_requests] == [second.run_requests[0].run_key]
    assert added(reset) == []


def test_cursor_stays_small_over_thousands_of_uploads(
    local_store: LocalMediaStore, instance: dg.DagsterInstance
) -> None:
    folder = Path(local_store.root) / "uploads" / "archive"
    folder.mkdir(parents=True)
    for i in range(2000):
        (folder / f"tape{i:04d}.mp4").touch()
    # An hour and more later: every upload is past the late-arrival window.
    sensor = build_upload_sensor(ingest, max_runs_per_tick=1000, clock=Clock(7200))
    first = tick(sensor, local_store, instance, None)
    second = tick(sensor, local_store, instance, first.cursor)
    third = tick(sensor, local_store, instance, second.cursor)
    assert (len(first.run_requests), len(second.run_requests), len(third.run_requests)) == (1000, 1000, 0)
    assert len({r.partition_key for r in first.run_requests + second.run_requests}) == 2000
    cursor = json.loads(second.cursor)
    assert cursor["hm"] is None and cursor["n"] == 0 and cursor["pending"] == {}
    assert len(second.cursor) < 200


def test_file_moved_in_with_an_old_mtime_is_still_seen(
    local_store: LocalMediaStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """A file moved in with `mv` keeps its old mtime and is still picked up (no pure-mtime high-water mark)."""
    uploads = Path(local_store.root) / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "first.mp4").write_bytes(b"1")
    sensor = build_upload_sensor(ingest, clock=Clock(7200))
    first = tick(sensor, local_store, instance, None)
    assert json.loads(first.cursor)["wm"] is not None

    outside = tmp_path / "camera-card" / "old.mp4"
    outside.parent.mkdir()
    outside.write_bytes(b"shot last year")
    year_ago = time.time() - 365 * 86400
    os.utime(outside, (year_ago, year_ago))
    os.rename(outside, uploads / "old.mp4")
    second = tick(sensor, local_store, instance, first.cursor)
    assert [r.tags[TAG_UPLOAD_KEY] for r in second.run_requests] == ["uploads/old.mp4"]


def test_late_listed_objects_inside_the_window_are_seen() -> None:
    """S3 dates a multipart upload by its start: it can be listed after newer objects were handled."""
    now = 100_000.0
    early = [StoredObject("uploads/small.mp4", 1, "e1", now - 50)]
    plan = plan_uploads(early, UploadCursor(), now=now, max_runs=10, settle_seconds=5, late_arrival_seconds=600)
    assert [o.key for o in plan.requests] == ["uploads/small.mp4"]
    assert plan.cursor.watermark is None  # inside the window: not folded yet
    assert plan.cursor.handled_mark == (now - 50, "uploads/small.mp4")

    big = StoredObject("uploads/big.mp4", 10**10, "e2-900", now - 400)  # started before small.mp4
    asked: list[list[str]] = []

    def with_runs(uploads: list[StoredObject]) -> set[str]:  # the instance: small.mp4 has its run
        asked.append([o.key for o in uploads])
        return {_digest(o) for o in uploads if o.key == "uploads/small.mp4"}

    later = plan_uploads(
        [*early, big], plan.cursor, now=now + 30, max_runs=10, settle_seconds=5, late_arrival_seconds=600,
        handled_lookup=with_runs,
    )  # fmt: skip
    assert [o.key for o in later.requests] == ["uploads/big.mp4"]
    assert asked == [["uploads/big.mp4", "uploads/small.mp4"]]  # the range no longer added up
    # Once both age past the window the mark covers them and the range empties.
    folded = plan_uploads(
        [*early, big], later.cursor, now=now + 1000, max_runs=10, settle_seconds=5, late_arrival_seconds=600,
        handled_lookup=with_runs,
    )  # fmt: skip
    assert folded.requests == [] and folded.cursor.handled == RangeSummary() and len(asked) == 1
    assert folded.cursor.watermark == (now - 50, "uploads/small.mp4")


def test_cursor_is_bounded_under_a_10k_burst(local_store: LocalMediaStore) -> None:
    """10,000 files land at once (copied in, inside the late-arrival window): every tick's cursor
    stays under 10 KB, each file is requested exactly once, the per-tick cap holds. (The cap is
    250 here to keep the test short; the cursor's size does not depend on it.)"""
    folder = Path(local_store.root) / "uploads" / "burst"
    folder.mkdir(parents=True)
    for i in range(10_000):
        (folder / f"{'long-name-' * 8}{i:05d}.mp4").touch()
    listing = list(local_store.list("uploads/"))
    start = max(o.mtime for o in listing)
    cursor, requested, sizes = UploadCursor(), [], []
    for tick_index in range(45):  # ticks 10 s apart, then one past the one-hour window
        now = start + 1 + 10 * tick_index if tick_index < 44 else start + 7200
        plan = plan_uploads(listing, cursor, now=now, max_runs=250, settle_seconds=5,
                            late_arrival_seconds=3600)  # fmt: skip
        assert len(plan.requests) <= 250
        requested += [o.key for o in plan.requests]
        cursor = UploadCursor.from_json(text := plan.cursor.to_json())
        sizes.append(len(text.encode()))
    assert max(sizes) <= 10_000, max(sizes)
    assert sorted(requested) == sorted(o.key for o in listing)  # all, none twice
    assert cursor.handled_mark is None and cursor.watermark == max((o.mtime, o.key) for o in listing)


def test_young_burst_is_remembered_only_up_to_the_pending_bound() -> None:
    now = 1000.0
    burst = [StoredObject(f"uploads/{'x' * 500}{i:05d}.mp4", 1, f"e{i}", now) for i in range(5000)]
    young = plan_uploads(burst, UploadCursor(), now=now, max_runs=20, settle_seconds=5, late_arrival_seconds=3600)
    assert young.requests == [] and len(young.cursor.pending) == PENDING_MAX
    assert len(young.cursor.to_json()) <= 10_000
    settled = plan_uploads(burst, young.cursor, now=now + 10, max_runs=20, settle_seconds=5,
                           late_arrival_seconds=3600)  # fmt: skip
    assert [o.key for o in settled.requests] == sorted(o.key for o in burst)[:20]


def test_version_1_cursor_is_read_once() -> None:
    now = 10_000.0
    handled = StoredObject("uploads/a.mp4", 1, "e1", now - 100)
    new = StoredObject("uploads/b.mp4", 1, "e2", now - 50)
    old = json.dumps({"v": 1, "wm": None, "done": [_digest(handled)[:12]], "pending": {}})
    plan = plan_uploads([handled, new], UploadCursor.from_json(old), now=now, max_runs=10, settle_seconds=5,
                        late_arrival_seconds=3600)  # fmt: skip
    assert [o.key for o in plan.requests] == ["uploads/b.mp4"]
    assert json.loads(plan.cursor.to_json())["n"] == 2


def test_unreadable_cursor_starts_over(local_store: LocalMediaStore, instance: dg.DagsterInstance) -> None:
    local_store.write_bytes("uploads/a.mp4", b"x")
    sensor = build_upload_sensor(ingest, clock=Clock(60))
    for cursor in ["not json", '{"wm": "oops"}', "[]"]:
        assert len(tick(sensor, local_store, instance, cursor).run_requests) == 1


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("uploads/x.mp4", True),
        ("uploads/X.M4V", True),
        ("uploads/x.webm", True),
        ("uploads/x.mts", True),
        ("uploads/x.ts", True),
        ("uploads/deep/er/x.avi", True),
        ("uploads/x.mp4.part", False),
        ("uploads/x.partial", False),
        ("uploads/.x.mp4", False),
        ("uploads/~x.mp4", False),
        ("uploads/x.jpg", False),
        ("uploads/x", False),
        ("uploads/.tmp/x.mp4", False),
    ],
)
def test_upload_filter(key: str, ok: bool) -> None:
    assert is_video_upload(key) is ok


def test_sensor_settings_and_definitions_load(local_store: LocalMediaStore) -> None:
    sensor = build_upload_sensor(ingest)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds is not None and sensor.minimum_interval_seconds <= 15
    by_name = build_upload_sensor("ingest", name="upload_sensor_by_name")
    defs = dg.Definitions(
        assets=[ingested],
        jobs=[ingest],
        sensors=[sensor, by_name, build_quarantine_sensor()],
        resources={"store": local_store},
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("upload_sensor").job_name == "ingest"
    assert defs.resolve_sensor_def("upload_sensor_by_name").job_name == "ingest"
    assert defs.resolve_sensor_def("quarantine_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def test_requested_run_executes_for_the_new_partition(s3_store: MediaStore, instance: dg.DagsterInstance) -> None:
    s3_store.write_bytes("uploads/Street Interview.mp4", b"x")
    sensor = build_upload_sensor(ingest, clock=Clock(60))
    defs = dg.Definitions(assets=[ingested], jobs=[ingest], sensors=[sensor], resources={"store": s3_store})
    result = tick(sensor, s3_store, instance, None)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    (request,) = result.run_requests
    run = defs.resolve_job_def("ingest").execute_in_process(
        partition_key=request.partition_key, tags=request.tags, instance=instance
    )
    assert run.success
    assert run.dagster_run.tags[TAG_UPLOAD_KEY] == "uploads/Street Interview.mp4"
    assert instance.get_dynamic_partitions("videos") == [video_id_for_upload("uploads/Street Interview.mp4")]


def test_legacy_id_serves_its_owner_and_never_a_colliding_upload(
    store: MediaStore, instance: dg.DagsterInstance
) -> None:
    """Two uploads sharing a 32-bit id get two partitions: the second never overwrites the first.

    The owner's partition from an earlier version (its ingested source_video names it) keeps its id;
    the other upload gets its own 64-bit id.
    """
    owner, intruder = COLLIDING
    legacy = legacy_video_id_for_upload(owner)
    instance.add_dynamic_partitions("videos", [legacy])
    store.write_bytes(f"work/{legacy}/source_video.json", json.dumps({"upload_key": owner}).encode())
    store.write_bytes(owner, b"the owner's video, re-uploaded")
    store.write_bytes(intruder, b"another user's video")

    result = tick(build_upload_sensor(ingest, clock=Clock(60)), store, instance, None)
    by_key = {r.tags[TAG_UPLOAD_KEY]: r.partition_key for r in result.run_requests}
    assert by_key == {owner: legacy, intruder: video_id_for_upload(intruder)}
    assert added(result) == [video_id_for_upload(intruder)]


def test_legacy_id_of_unknown_ownership_is_not_reused(store: MediaStore, instance: dg.DagsterInstance) -> None:
    """A legacy partition nothing names an owner for (never ingested) is not handed to anyone."""
    owner, _ = COLLIDING
    instance.add_dynamic_partitions("videos", [legacy_video_id_for_upload(owner)])
    store.write_bytes(owner, b"x")
    result = tick(build_upload_sensor(ingest, clock=Clock(60)), store, instance, None)
    assert [r.partition_key for r in result.run_requests] == [video_id_for_upload(owner)]

    # Once a claim names the owner (a run of the legacy partition claimed it), the id is kept.
    store.write_bytes(id_claim_key(legacy_video_id_for_upload(owner)), json.dumps({"upload_key": owner}).encode())
    again = tick(build_upload_sensor(ingest, clock=Clock(60)), store, instance, None)
    assert [r.partition_key for r in again.run_requests] == [legacy_video_id_for_upload(owner)]


def test_late_listing_inside_the_range_is_resolved_by_the_runs_tags(
    local_store: LocalMediaStore, instance: dg.DagsterInstance
) -> None:
    """The sensor's lookup: uploads whose (key, etag) a run carries are handled; a late one is requested."""
    from dagster._core.storage.dagster_run import DagsterRun

    uploads = Path(local_store.root) / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "a.mp4").write_bytes(b"a")
    sensor = build_upload_sensor(ingest, clock=Clock(60))
    first = tick(sensor, local_store, instance, None)
    (request,) = first.run_requests
    instance.add_run(DagsterRun(job_name="ingest", run_id="r-a", tags=request.tags))
    # A cursor whose range summary no longer matches (as after a late listing): the runs decide.
    broken = json.loads(first.cursor) | {"n": 5}
    (uploads / "b.mp4").write_bytes(b"b")
    second = tick(sensor, local_store, instance, json.dumps(broken))
    assert [r.tags[TAG_UPLOAD_KEY] for r in second.run_requests] == ["uploads/b.mp4"]
