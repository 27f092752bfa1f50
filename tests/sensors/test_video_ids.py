"""Video ids (`videos` partition keys): stable, idempotent, safe, collision-free for distinct uploads."""

import hashlib
import re

import pytest

from autoedit_dagster.partitions import PROFILE_NAMES, is_video_id, profiles, video_id_for_upload, videos

SAFE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")


def test_shape_and_stability() -> None:
    key = "uploads/Interview Take 2.MOV"
    expected_hash = hashlib.sha1(key.encode()).hexdigest()[:8]
    assert video_id_for_upload(key) == f"interview-take-2-{expected_hash}"
    # Same input, same id, every time and in every process (no salt, no randomness).
    assert {video_id_for_upload(key) for _ in range(3)} == {f"interview-take-2-{expected_hash}"}


@pytest.mark.parametrize(
    ("key", "slug"),
    [
        ("uploads/Café Crème.mp4", "cafe-creme"),
        ("uploads/動画 テスト.mp4", "video"),
        ("uploads/-rf --no-preserve-root.mp4", "rf-no-preserve-root"),
        ("uploads/$(rm -rf ~); `id` | cat > x.mov", "rm-rf-id-cat-x"),
        ("uploads/../../etc/passwd.mp4", "passwd"),
        ("uploads/a\nb\tc.mkv", "a-b-c"),
        ("uploads/___.mp4", "video"),
        ("uploads/" + "very long name " * 20 + ".mp4", None),
        ("uploads/.mp4", "mp4"),
    ],
)
def test_ids_are_safe_for_paths_and_shells(key: str, slug: str | None) -> None:
    video_id = video_id_for_upload(key)
    assert SAFE.match(video_id), video_id
    assert len(video_id) <= 60
    assert is_video_id(video_id)
    if slug is not None:
        assert video_id.rsplit("-", 1)[0] == slug


def test_same_name_different_uploads_do_not_collide() -> None:
    keys = [
        "uploads/clip.mp4",
        "uploads/clip.mov",
        "uploads/a/clip.mp4",
        "uploads/b/clip.mp4",
        "uploads/Clip.mp4",
        "uploads/clip .mp4",
    ]
    ids = [video_id_for_upload(key) for key in keys]
    assert len(set(ids)) == len(keys)
    assert all(video_id.startswith("clip-") for video_id in ids)


def test_many_uploads_get_distinct_ids() -> None:
    ids = {video_id_for_upload(f"uploads/day{i // 100}/IMG_{i % 100:04d}.MOV") for i in range(5000)}
    assert len(ids) == 5000


def test_is_video_id_rejects_traversal_and_partition_syntax() -> None:
    for value in ["..", "a/b-12345678", "tate|clip-12345678", "clip", "Clip-12345678", "-clip-12345678"]:
        assert not is_video_id(value)


def test_partition_definitions() -> None:
    assert videos.name == "videos"
    assert profiles.get_partition_keys() == list(PROFILE_NAMES) == ["tate", "square", "yoko"]
    with pytest.raises(ValueError):
        video_id_for_upload("")
