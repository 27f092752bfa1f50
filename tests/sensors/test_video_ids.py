"""Video ids (`videos` partition keys): stable, idempotent, safe, collision-free for distinct uploads."""

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from autoedit_dagster.names import PROFILE_NAMES, id_claim_key
from autoedit_dagster.partitions import (
    VideoIdTaken,
    claim_video_id,
    is_video_id,
    legacy_video_id_for_upload,
    owner_of,
    video_id_for_upload,
    videos,
)
from autoedit_dagster.resources import MediaStore

SAFE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")

# Two real uploads whose 32-bit ids (earlier versions) collide: found by the review's birthday search.
COLLIDING = ("uploads/user37312/IMG_0001.MOV", "uploads/user42367/IMG_0001.MOV")


def test_shape_and_stability() -> None:
    key = "uploads/Interview Take 2.MOV"
    expected_hash = hashlib.sha256(key.encode()).hexdigest()[:16]  # 64 bits
    assert video_id_for_upload(key) == f"interview-take-2-{expected_hash}"
    # Same input, same id, every time and in every process (no salt, no randomness).
    assert {video_id_for_upload(key) for _ in range(3)} == {f"interview-take-2-{expected_hash}"}
    # The 32-bit id earlier versions gave it stays recognisable, so existing partitions keep working.
    legacy = legacy_video_id_for_upload(key)
    assert legacy == f"interview-take-2-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    assert is_video_id(legacy) and legacy != video_id_for_upload(key)


def test_uploads_whose_32_bit_ids_collide_get_distinct_ids() -> None:
    """These two uploads share a 32-bit id (and would share its renders): their 64-bit ids differ."""
    first, second = COLLIDING
    assert legacy_video_id_for_upload(first) == legacy_video_id_for_upload(second)
    assert video_id_for_upload(first) != video_id_for_upload(second)


def test_a_birthday_search_collides_legacy_ids_but_not_new_ones() -> None:
    """The attack: a birthday search over plausible keys (0.2 s) finds two uploads sharing a 32-bit id."""
    seen: dict[str, str] = {}
    for i in range(200_000):
        key = f"uploads/user{i}/IMG_0001.MOV"
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        if (other := seen.setdefault(digest, key)) != key:
            break
    else:
        pytest.fail("no 32-bit collision in 200k keys")
    assert legacy_video_id_for_upload(key) == legacy_video_id_for_upload(other)
    assert video_id_for_upload(key) != video_id_for_upload(other)


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
    assert list(PROFILE_NAMES) == ["tate", "square", "yoko"]
    with pytest.raises(ValueError):
        video_id_for_upload("")


def test_a_claimed_id_refuses_every_other_upload(store: MediaStore) -> None:
    owner, intruder = COLLIDING
    legacy = legacy_video_id_for_upload(owner)
    claim_video_id(store, legacy, owner, "run-1")
    claim_video_id(store, legacy, owner, "run-2")  # idempotent for the owner
    with pytest.raises(VideoIdTaken, match=f"belongs to {owner}"):
        claim_video_id(store, legacy, intruder, "run-3")
    record = json.loads(store.read_bytes(id_claim_key(legacy)))
    assert (record["upload_key"], record["run_id"]) == (owner, "run-1")
    with pytest.raises(ValueError):  # a key can only claim its own ids
        claim_video_id(store, video_id_for_upload(owner), intruder)
    with pytest.raises(PermissionError):  # and a claim is never deleted
        store.delete_prefix("ids/")


def test_an_id_from_before_claims_belongs_to_the_upload_its_outputs_name(store: MediaStore) -> None:
    owner, intruder = COLLIDING
    legacy = legacy_video_id_for_upload(owner)
    store.write_bytes(f"renders/{legacy}/tate/report.json", json.dumps({"upload_key": owner}).encode())
    assert owner_of(store, legacy) == owner
    with pytest.raises(VideoIdTaken):
        claim_video_id(store, legacy, intruder)
    claim_video_id(store, legacy, owner)
    assert json.loads(store.read_bytes(id_claim_key(legacy)))["upload_key"] == owner


def test_racing_claims_have_exactly_one_winner(store: MediaStore) -> None:
    legacy = legacy_video_id_for_upload(COLLIDING[0])

    def attempt(key: str) -> bool:
        try:
            claim_video_id(store, legacy, key)
        except VideoIdTaken:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(attempt, [COLLIDING[i % 2] for i in range(16)]))
    winner = owner_of(store, legacy)
    assert won == [COLLIDING[i % 2] == winner for i in range(16)]
