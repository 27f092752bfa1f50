"""MediaStore contract: the same behaviour on a local folder and on S3 (moto server over HTTP)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from autoedit_dagster.resources import (
    LocalMediaStore,
    MediaStore,
    PolarsParquetIOManager,
    PydanticJsonIOManager,
    S3MediaStore,
    build_resources,
    default_storage_root,
    media_store_from_env,
)


def test_write_read_stat_exists(store: MediaStore) -> None:
    assert not store.exists("work/v1/a.json")
    store.write_bytes("work/v1/a.json", b'{"a": 1}')
    assert store.exists("work/v1/a.json")
    assert store.read_bytes("work/v1/a.json") == b'{"a": 1}'
    first = store.stat("work/v1/a.json")
    assert (first.key, first.size) == ("work/v1/a.json", 8)
    assert first.etag and first.mtime > 0

    store.write_bytes("work/v1/a.json", b'{"a": 22}')
    second = store.stat("work/v1/a.json")
    assert store.read_bytes("work/v1/a.json") == b'{"a": 22}'
    assert second.size == 9 and second.etag != first.etag


def test_create_bytes_never_replaces(store: MediaStore) -> None:
    assert store.create_bytes("ids/v1.json", b"first") is True
    assert store.create_bytes("ids/v1.json", b"second") is False
    assert store.read_bytes("ids/v1.json") == b"first"
    assert [obj.key for obj in store.list("ids/")] == ["ids/v1.json"]  # no temp file left behind


def test_missing_objects_raise_file_not_found(store: MediaStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.read_bytes("work/none.json")
    with pytest.raises(FileNotFoundError):
        store.stat("work/none.json")
    with pytest.raises(FileNotFoundError):
        store.get_file("work/none.json", tmp_path / "x")
    with pytest.raises(FileNotFoundError), store.local_copy("work/none.json"):
        pass
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "work/../../x", "work//x", "work/./x", "a\\b"])
def test_unsafe_keys_are_refused(store: MediaStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.write_bytes(key, b"x")


def test_list_is_paginated_and_filtered_by_prefix(store: MediaStore) -> None:
    if isinstance(store, S3MediaStore):
        # Two keys per page: the listing must follow continuation tokens.
        store = store.model_copy(update={"page_size": 2})
    keys = [f"uploads/clip{i}.mp4" for i in range(5)] + ["uploads/sub/deep.mov", "work/v/t.parquet"]
    for i, key in enumerate(keys):
        store.write_bytes(key, b"x" * (i + 1))
    listed = {obj.key: obj for obj in store.list("uploads/")}
    assert sorted(listed) == sorted(keys[:6])
    assert listed["uploads/clip2.mp4"].size == 3
    assert {obj.key for obj in store.list("uploads/clip")} == set(keys[:5])
    assert {obj.key for obj in store.list()} == set(keys)
    assert list(store.list("missing/")) == []


def test_put_get_file_and_local_copy(store: MediaStore, tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(os.urandom(300_000))
    store.put_file(source, "renders/v1/tate/final.mp4")
    target = store.get_file("renders/v1/tate/final.mp4", tmp_path / "out" / "final.mp4")
    assert target.read_bytes() == source.read_bytes()
    with store.local_copy("renders/v1/tate/final.mp4") as path:
        assert path.suffix == ".mp4"
        assert path.read_bytes() == source.read_bytes()
        copy_path = path
    # The S3 download is temporary; the local store hands out the stored file itself.
    assert copy_path.exists() == isinstance(store, LocalMediaStore)
    # local_copy also takes the store's own URI (assets pass MediaRef.uri around).
    with store.local_copy(store.uri("renders/v1/tate/final.mp4")) as path:
        assert path.stat().st_size == 300_000
    assert store.key_from_uri(store.uri("work/v1/a b.json")) == "work/v1/a b.json"


def test_delete_prefix_removes_a_folder_and_refuses_protected_ones(store: MediaStore) -> None:
    keys = ["work/v1/a.parquet", "work/v1/sub/b.json", "work/v10/c.json", "uploads/v1.mp4", "renders/v1/x"]
    for key in keys:
        store.write_bytes(key, b"x")
    assert store.delete_prefix("work/v1/") == 2
    assert {obj.key for obj in store.list()} == {"work/v10/c.json", "uploads/v1.mp4", "renders/v1/x"}
    assert store.delete_prefix("work/absent/") == 0
    for prefix in ["uploads/", "uploads/sub/", "renders/", "renders/v1/tate/", ""]:
        with pytest.raises((PermissionError, ValueError)):
            store.delete_prefix(prefix)
    with pytest.raises(ValueError):
        store.delete_prefix("work/v1")  # not a folder: would also match work/v10/
    assert {obj.key for obj in store.list()} == {"work/v10/c.json", "uploads/v1.mp4", "renders/v1/x"}


def test_local_write_is_atomic_when_the_writer_dies(local_store: LocalMediaStore, tmp_path: Path) -> None:
    """A failed publish leaves the previous object and no temporary file behind."""
    local_store.write_bytes("renders/v/tate/final.mp4", b"old")
    with pytest.raises(FileNotFoundError):
        local_store.put_file(tmp_path / "vanished.mp4", "renders/v/tate/final.mp4")
    folder = Path(local_store.root) / "renders" / "v" / "tate"
    assert [p.name for p in folder.iterdir()] == ["final.mp4"]
    assert local_store.read_bytes("renders/v/tate/final.mp4") == b"old"


def test_local_written_files_are_world_readable(local_store: LocalMediaStore) -> None:
    """Published files are readable by other service users: mkstemp's 0600 does not leak onto them."""
    local_store.write_bytes("catalog/videos.parquet", b"x")
    mode = (Path(local_store.root) / "catalog" / "videos.parquet").stat().st_mode & 0o777
    assert mode == 0o644


def test_local_listing_hides_in_flight_temp_files(local_store: LocalMediaStore) -> None:
    folder = Path(local_store.root) / "work" / "v"
    folder.mkdir(parents=True)
    (folder / ".autoedit-tmp-abc.tmp").write_bytes(b"partial")
    (folder / "done.json").write_bytes(b"{}")
    assert [obj.key for obj in local_store.list("work/")] == ["work/v/done.json"]


def test_s3_large_files_go_multipart(s3_store: S3MediaStore, tmp_path: Path) -> None:
    store = s3_store.model_copy(update={"multipart_threshold_mb": 5, "multipart_chunksize_mb": 5})
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    store.put_file(source, "renders/big/tate/final.mp4")
    # A multipart ETag is "<md5 of part md5s>-<part count>".
    assert store.stat("renders/big/tate/final.mp4").etag.endswith("-3")
    assert store.get_file("renders/big/tate/final.mp4", tmp_path / "back.mp4").read_bytes() == (source.read_bytes())


def test_deploy_lifecycle_rule_aborts_abandoned_multipart_uploads(s3_bucket: str, moto_endpoint: str) -> None:
    """deploy/s3-lifecycle.json is accepted by an S3 API as deploy/README.md tells operators to apply it."""
    rules = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "s3-lifecycle.json").read_text())
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration=rules)
    [rule] = client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_s3_keys_live_under_the_prefix(s3_store: S3MediaStore, moto_endpoint: str) -> None:
    s3_store.write_bytes("uploads/a.mp4", b"x")
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]]
    assert keys == ["team/autoedit/uploads/a.mp4"]
    assert s3_store.uri("uploads/a.mp4") == f"s3://{s3_store.bucket}/team/autoedit/uploads/a.mp4"


def test_s3_client_retries_in_standard_mode(s3_store: S3MediaStore) -> None:
    retries = s3_store._s3().meta.config.retries
    assert retries["mode"] == "standard" and retries["total_max_attempts"] == 6


def test_s3_endpoint_down_fails_clearly_after_retries(s3_bucket: str) -> None:
    store = S3MediaStore(bucket=s3_bucket, endpoint_url="http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(EndpointConnectionError):
        store.write_bytes("work/a.json", b"{}")


def test_aws_endpoint_url_from_environment_is_honoured(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, s3_bucket: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    direct = S3MediaStore(bucket=s3_bucket)  # boto3 reads the variable itself
    direct.write_bytes("work/a.json", b"{}")
    assert direct._s3().meta.endpoint_url == moto_endpoint

    monkeypatch.setenv("AUTOEDIT_STORAGE", f"s3://{s3_bucket}/pre/fix/")
    chosen = media_store_from_env()
    assert isinstance(chosen, S3MediaStore)
    assert (chosen.bucket, chosen.prefix, chosen.endpoint_url) == (s3_bucket, "pre/fix", moto_endpoint)
    assert chosen.exists("work/a.json") is False
    assert direct.exists("work/a.json")


def test_media_store_from_env_picks_local_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = media_store_from_env()
    assert isinstance(default, LocalMediaStore)
    assert Path(default.root) == default_storage_root()
    assert default_storage_root().name == ".storage"

    monkeypatch.setenv("AUTOEDIT_STORAGE", str(tmp_path / "media"))
    assert media_store_from_env() == LocalMediaStore(root=str(tmp_path / "media"))
    assert media_store_from_env(f"file://{tmp_path}/x") == LocalMediaStore(root=str(tmp_path / "x"))
    with pytest.raises(ValueError):
        media_store_from_env("s3:///no-bucket")


def test_build_resources_shares_one_store(local_store: LocalMediaStore) -> None:
    resources = build_resources(local_store)
    assert resources["store"] is local_store
    assert isinstance(resources["parquet_io_manager"], PolarsParquetIOManager)
    assert isinstance(resources["json_io_manager"], PydanticJsonIOManager)


# -------------------------------------------------------------------------------- promote


OLD = {"final.mp4": b"old video", "thumb.jpg": b"old thumb", "edit.edl": b"old edl"}
NEW = {"final.mp4": b"new video", "thumb.jpg": b"new thumb", "report.json": b"new report"}
FINAL, STAGED = "renders/v1/tate/", "staging/run-1/v1/tate/"


def files(store: MediaStore, prefix: str) -> dict[str, bytes]:
    return {obj.key[len(prefix) :]: store.read_bytes(obj.key) for obj in store.list(prefix)}


def stage_sets(store: MediaStore) -> None:
    for name, data in OLD.items():
        store.write_bytes(FINAL + name, data)
    for name, data in NEW.items():
        store.write_bytes(STAGED + name, data)


def test_promote_publishes_the_staged_set_together(store: MediaStore) -> None:
    stage_sets(store)
    keys = store.promote(STAGED, FINAL, last="final.mp4")
    assert keys == [FINAL + "report.json", FINAL + "thumb.jpg", FINAL + "final.mp4"]  # the video last
    # The new set, plus what this run did not replace; nothing left in staging.
    assert files(store, FINAL) == {**NEW, "edit.edl": b"old edl"}
    assert list(store.list("staging/")) == []
    assert store.promote(STAGED, FINAL) == []  # nothing staged: nothing changes


def test_promote_a_subset(store: MediaStore) -> None:
    stage_sets(store)
    assert store.promote(STAGED, FINAL, names=["thumb.jpg"]) == [FINAL + "thumb.jpg"]
    assert files(store, FINAL) == {**OLD, "thumb.jpg": b"new thumb"}
    assert sorted(files(store, STAGED)) == ["final.mp4", "report.json"]


@pytest.mark.parametrize(
    ("staged", "final", "error"),
    [
        ("work/v1/", FINAL, ValueError),
        (STAGED, "uploads/", PermissionError),
        (STAGED, "ids/", PermissionError),
        (STAGED, "staging/other/", PermissionError),
        ("staging/run-1/v1/tate", FINAL, ValueError),
        ("staging/../uploads/", FINAL, ValueError),
    ],
)
def test_promote_refuses_other_folders(store: MediaStore, staged: str, final: str, error: type) -> None:
    with pytest.raises(error):
        store.promote(staged, final)


def test_local_promote_is_one_atomic_swap(local_store: LocalMediaStore) -> None:
    """A reader that opens the folder, then its files, always gets one whole set: never a mix of two."""
    folder_path = Path(local_store.root) / FINAL
    names = ["final.mp4", "thumb.jpg", "report.json"]
    for name in names:
        local_store.write_bytes(FINAL + name, b"0")
    done = threading.Event()
    seen: list[set[bytes]] = []

    def reader() -> None:
        while not done.is_set():
            try:
                folder = os.open(folder_path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                seen.append({Path(f"/proc/self/fd/{folder}/{name}").read_bytes() for name in names})
            except FileNotFoundError:  # the old set was cleaned up under the reader: it reopens
                pass
            finally:
                os.close(folder)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, 60):
            for name in names:
                local_store.write_bytes(f"staging/run-{generation}/v1/tate/{name}", str(generation).encode())
            local_store.promote(f"staging/run-{generation}/v1/tate/", FINAL, last="final.mp4")
    finally:
        done.set()
        thread.join()
    assert len(seen) > 10
    assert [s for s in seen if len(s) != 1] == []  # every read saw one generation
    assert files(local_store, FINAL) == {name: b"59" for name in names}


def test_local_promote_interrupted_before_the_swap_leaves_the_old_set(
    local_store: LocalMediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoedit_dagster.resources import media_store

    stage_sets(local_store)

    def killed(new: Path, target: Path) -> bool:
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(media_store, "_swap_in", killed)
    with pytest.raises(KeyboardInterrupt):
        local_store.promote(STAGED, FINAL, last="final.mp4")
    assert files(local_store, FINAL) == OLD
    assert files(local_store, STAGED) == NEW  # whole, for a repeat or the sweep
    assert not [p for p in Path(local_store.root).rglob(".*")]


def test_local_promote_without_an_atomic_exchange_goes_file_by_file(
    local_store: LocalMediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoedit_dagster.resources import media_store

    monkeypatch.setattr(media_store, "_renameat2", lambda: None)  # e.g. not Linux
    stage_sets(local_store)
    local_store.promote(STAGED, FINAL, last="final.mp4")
    assert files(local_store, FINAL) == {**NEW, "edit.edl": b"old edl"}
    assert not [p for p in Path(local_store.root).rglob(".*")]


def test_s3_promote_interrupted_is_completed_by_a_repeat(
    s3_store: S3MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The video goes last, and staging is only emptied once all are published: a repeat completes it."""
    stage_sets(s3_store)
    client = s3_store._s3()
    real_copy = client.copy

    def dies_at_the_video(source: dict, bucket: str, key: str, **kwargs: object) -> None:
        if key.endswith("final.mp4"):
            raise ConnectionError("worker lost the network")
        real_copy(source, bucket, key, **kwargs)

    monkeypatch.setattr(client, "copy", dies_at_the_video)
    with pytest.raises(ConnectionError):
        s3_store.promote(STAGED, FINAL, last="final.mp4")
    assert files(s3_store, FINAL)["final.mp4"] == b"old video"  # readers keep the verified old video
    assert files(s3_store, STAGED) == NEW
    monkeypatch.setattr(client, "copy", real_copy)
    s3_store.promote(STAGED, FINAL, last="final.mp4")
    assert files(s3_store, FINAL) == {**NEW, "edit.edl": b"old edl"}
    assert list(s3_store.list("staging/")) == []
