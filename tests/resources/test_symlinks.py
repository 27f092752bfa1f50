"""A local store never follows a symbolic link under uploads/ or out of its root."""

from pathlib import Path

import dagster as dg
import pytest

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.names import TAG_UPLOAD_KEY
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore

SECRET = b"outside the storage root"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[LocalMediaStore, Path]:
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.mp4").write_bytes(SECRET)
    (outside / "folder" / "a.mp4").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "evil.mp4").symlink_to(outside / "secret.mp4")
    (root / "uploads" / "linked").symlink_to(outside / "folder")
    return LocalMediaStore(root=str(root)), outside


@pytest.mark.parametrize("key", ["uploads/evil.mp4", "uploads/linked/a.mp4"])
def test_reads_through_a_link_are_refused(layout: tuple[LocalMediaStore, Path], key: str) -> None:
    store, _ = layout
    with pytest.raises(ValueError, match="symbolic link"):
        store.read_bytes(key)
    with pytest.raises(ValueError, match="symbolic link"), store.local_copy(key):
        pass
    with pytest.raises(ValueError, match="symbolic link"):
        store.get_file(key, layout[1].parent / "copy.mp4")


def test_listing_never_follows_a_link(layout: tuple[LocalMediaStore, Path]) -> None:
    store, outside = layout
    listed = {obj.key: obj.size for obj in store.list("uploads/")}
    # The linked file is listed as the link itself (so its run is refused with a reason); the
    # linked folder is not walked.
    assert listed == {"uploads/evil.mp4": len(str(outside / "secret.mp4"))}


def test_writes_through_a_link_out_of_the_root_are_refused(layout: tuple[LocalMediaStore, Path]) -> None:
    store, outside = layout
    (Path(store.root) / "renders").mkdir()
    (Path(store.root) / "renders" / "v-0001").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        store.write_bytes("renders/v-0001/tate/final.mp4", b"x")
    assert not (outside / "tate").exists()


def test_a_linked_upload_fails_its_run_with_the_reason(layout: tuple[LocalMediaStore, Path]) -> None:
    store, _ = layout
    key = "uploads/evil.mp4"
    video_id = video_id_for_upload(key)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", [video_id])
    result = build_definitions(store).resolve_job_def("video_job").execute_in_process(
        partition_key=video_id, instance=instance, tags={TAG_UPLOAD_KEY: key}, raise_on_error=False,
        asset_selection=[dg.AssetKey("source_video")],
    )  # fmt: skip
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "symbolic link" in failure.event_specific_data.error.message
    assert not store.exists(f"work/{video_id}/source_video.json")
