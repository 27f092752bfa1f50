"""Media through a real gateway on loopback, against the real local store and the moto S3 server:
`POST /uploads` (streamed, limited, operators only, names checked, nothing half-written visible)
and `GET /media/...` (range requests locally, a presigned redirect on S3)."""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from autoedit_dagster.gateway.app import Gateway
from autoedit_dagster.gateway.settings import GatewaySettings
from autoedit_dagster.gateway.tokens import ConfigurationError
from autoedit_dagster.names import REPORT_NAME, UPLOADS_PREFIX, id_claim_key, render_prefix
from autoedit_dagster.partitions import legacy_video_id_for_upload, video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore, MediaStore, S3MediaStore
from autoedit_dagster.resources.media_store import TMP_PREFIX

from .conftest import SECRET, ServerThread, bearer, token

MB = 1024 * 1024
LIMIT = 3 * MB
VIDEO = video_id_for_upload("uploads/talk.mp4")
RENDER = os.urandom(64 * 1024)


@pytest.fixture
def gateway(start_gateway, fake_upstream: str, store: MediaStore) -> tuple[str, MediaStore]:
    return start_gateway(fake_upstream, rate_limit=0, store=store, max_upload_bytes=LIMIT), store


def upload(client: httpx.Client, url: str, name: str, body, role: str = "operator", **params: str) -> httpx.Response:
    return client.post(
        f"{url}/uploads", params={"name": name, **params}, content=body,
        headers={**bearer(token(role)), "Content-Type": "application/octet-stream"},
    )  # fmt: skip


def chunked(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_an_operator_uploads_and_gets_the_sensors_video_id(gateway, client: httpx.Client) -> None:
    url, store = gateway
    data = os.urandom(LIMIT - 1)
    reply = upload(client, url, "talk.mp4", chunked(data))  # chunked transfer encoding: no length up front
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["video_id"], body["key"], body["size"]) == (VIDEO, "uploads/talk.mp4", len(data))
    assert body["etag"] == store.stat("uploads/talk.mp4").etag and body["uri"] == store.uri("uploads/talk.mp4")
    assert store.read_bytes("uploads/talk.mp4") == data
    again = upload(client, url, "talk.mp4", b"other")
    assert again.status_code == 409 and "replace=1" in again.json()["detail"]
    replaced = upload(client, url, "talk.mp4", b"second version", replace="1")
    assert replaced.status_code == 201 and store.read_bytes("uploads/talk.mp4") == b"second version"
    assert [obj.key for obj in store.list(UPLOADS_PREFIX)] == ["uploads/talk.mp4"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../ids/x.mp4", "not a path"),
        ("sub/talk.mp4", "not a path"),
        ("..\\talk.mp4", "not a path"),
        ("/etc/passwd.mp4", "not a path"),
        ("..", "not a file name"),
        (".hidden.mp4", "not a video file name"),
        ("talk.mp4.part", "not a video file name"),
        ("notes.txt", "not a video file name"),
        ("talk\n.mp4", "control"),
        ("", "name the upload"),
    ],
)
def test_names_that_are_paths_or_not_videos_are_refused(gateway, client, name: str, fragment: str) -> None:
    url, store = gateway
    reply = upload(client, url, name, b"x" * 100)
    assert reply.status_code == 400 and fragment in reply.json()["detail"], reply.text
    assert list(store.list("")) == []


def test_viewers_cannot_upload_and_form_posts_are_refused(gateway, client: httpx.Client) -> None:
    url, store = gateway
    viewer = upload(client, url, "talk.mp4", b"x", role="viewer")
    assert viewer.status_code == 403 and "operator" in viewer.json()["detail"]
    form = client.post(f"{url}/uploads?name=talk.mp4", data={"a": "b"}, headers=bearer(token("operator")))
    assert form.status_code == 415
    assert client.get(f"{url}/uploads", headers=bearer(token("operator"))).status_code == 405
    cookie = {"Cookie": f"autoedit_token={token('operator')}", "Origin": "https://evil.example"}
    cross_site = client.post(f"{url}/uploads?name=talk.mp4", content=b"x", headers=cookie)
    assert cross_site.status_code == 403
    assert list(store.list("")) == []


def test_over_the_limit_is_413_and_nothing_is_kept(gateway, client: httpx.Client) -> None:
    url, store = gateway
    declared = upload(client, url, "big.mp4", b"x" * (LIMIT + 1))  # Content-Length says so: refused at once
    assert declared.status_code == 413 and "AUTOEDIT_MAX_UPLOAD_MB" in declared.json()["detail"]
    streamed = upload(client, url, "big.mp4", chunked(b"x" * (LIMIT + MB)))  # found out while streaming
    assert streamed.status_code == 413
    assert list(store.list("")) == []
    if isinstance(store, LocalMediaStore):
        assert not any(p.name.startswith(TMP_PREFIX) for p in (store._root() / "uploads").iterdir())
    else:
        client_s3 = store._s3()
        assert not client_s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_nothing_half_written_is_listed_during_an_upload(gateway, client: httpx.Client) -> None:
    url, store = gateway
    listed: list[list[str]] = []
    first_half_sent = threading.Event()
    proceed = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"a" * MB
        first_half_sent.set()
        proceed.wait(10)
        yield b"b" * MB

    def watch() -> None:
        first_half_sent.wait(10)
        listed.append([obj.key for obj in store.list("")])
        proceed.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    reply = upload(client, url, "slow.mp4", slow_body())
    watcher.join()
    assert reply.status_code == 201
    assert listed == [[]]  # mid-upload: the sensor's listing shows nothing
    assert store.stat("uploads/slow.mp4").size == 2 * MB


def test_a_50_mb_upload_is_streamed(start_gateway, fake_upstream: str, store: MediaStore) -> None:
    """Locally: tracemalloc's peak (gateway, store and client in this process) stays far below the
    upload. On S3 (moto keeps the parts in this process's memory) the object is made of 5 MB parts."""
    if isinstance(store, S3MediaStore):
        store = store.model_copy(update={"stream_part_mb": 5})
    url = start_gateway(fake_upstream, rate_limit=0, store=store, max_upload_bytes=64 * MB)
    piece = os.urandom(MB)
    with httpx.Client(timeout=60, trust_env=False) as http:
        tracemalloc.start()
        try:
            reply = upload(http, url, "big.mp4", (piece for _ in range(50)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert reply.status_code == 201 and reply.json()["size"] == 50 * MB
    if isinstance(store, S3MediaStore):
        assert store.stat("uploads/big.mp4").etag.endswith("-10")  # a multipart upload of 10 parts
    else:
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"
        print(f"\n50 MB upload: tracemalloc peak {peak / MB:.2f} MB")


def test_render_files_by_range_or_presigned_redirect(gateway, client: httpx.Client) -> None:
    url, store = gateway
    prefix = render_prefix(VIDEO, "tate")
    store.write_bytes(prefix + "final.mp4", RENDER)
    store.write_bytes(prefix + REPORT_NAME, json.dumps({"video_id": VIDEO}).encode())
    store.write_bytes(prefix + "secret.txt", b"not served")
    viewer = bearer(token("viewer"))
    media = f"{url}/media/{VIDEO}/tate/final.mp4"
    reply = client.get(media, headers={**viewer, "Range": "bytes=1000-1999"})
    if isinstance(store, S3MediaStore):
        assert reply.status_code == 302 and "Signature=" in reply.headers["location"]
        fetched = client.get(reply.headers["location"], headers={"Range": "bytes=1000-1999"})  # no gateway token
        assert fetched.status_code == 206 and fetched.content == RENDER[1000:2000]
        assert client.get(reply.headers["location"]).content == RENDER
    else:
        assert reply.status_code == 206 and reply.content == RENDER[1000:2000]
        assert reply.headers["content-range"] == f"bytes 1000-1999/{len(RENDER)}"
        assert client.get(media, headers=viewer).content == RENDER
        head = client.head(media, headers=viewer)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(RENDER))
    assert client.get(media).status_code == 401
    refused = {
        f"/media/{VIDEO}/tate/secret.txt": 404,
        f"/media/{VIDEO}/evil/final.mp4": 400,
        f"/media/{VIDEO}/tate/..%2f..%2ftate%2ffinal.mp4": 404,
        "/media/ids/tate/final.mp4": 404,
        f"/media/{VIDEO}/square/final.mp4": 404,
    }
    for path, status in refused.items():
        assert client.get(url + path, headers=viewer).status_code == status, path
    # `..` out of /media/ leaves the media routes altogether (here: the fake upstream's echo).
    escaped = client.get(f"{url}/media/{VIDEO}%2f..%2f..%2frenders/{VIDEO}/tate/final.mp4", headers=viewer)
    assert escaped.json()["data"]["echo"]["path"] == f"/renders/{VIDEO}/tate/final.mp4"
    assert client.post(media, headers=bearer(token("operator")), content=b"x").status_code == 405


def test_media_routes_are_rate_limited_and_counted(start_gateway, fake_upstream, local_store, client) -> None:
    url = start_gateway(fake_upstream, rate_limit=3, store=local_store)
    operator = bearer(token("operator", subject="uploader"))
    statuses = [
        client.post(f"{url}/uploads?name=a{i}.mp4", content=b"x", headers=operator).status_code for i in range(3)
    ]
    limited = client.get(f"{url}/media/{VIDEO}/tate/final.mp4", headers=operator)
    assert statuses == [201, 201, 201] and limited.status_code == 429 and "Retry-After" in limited.headers
    metrics = client.get(f"{url}/metrics", headers=bearer(token("viewer"))).text
    assert 'autoedit_gateway_requests_total{method="POST",role="operator",route="uploads",status="201"} 3.0' in metrics
    assert 'autoedit_gateway_uploads_total{outcome="stored"} 3.0' in metrics
    assert 'autoedit_gateway_upload_bytes_total{outcome="stored"} 3.0' in metrics


def test_a_silent_client_is_cut_off_and_uploads_beyond_the_limit_wait_their_turn(fake_upstream, local_store) -> None:
    gateway = Gateway(GatewaySettings(upstream=fake_upstream, jwt_secret=SECRET, rate_limit=0), store=local_store)
    gateway.media.idle_seconds, gateway.media.max_concurrent = 1.0, 1
    server = ServerThread(gateway)
    started, release = threading.Event(), threading.Event()

    def stalled() -> Iterator[bytes]:
        yield b"a" * MB
        started.set()
        release.wait(10)  # silent for longer than idle_seconds
        yield b"b"

    replies: list[object] = []

    def send() -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            try:
                replies.append(upload(http, server.url, "stalled.mp4", stalled()).status_code)
            except httpx.HTTPError as exc:  # the gateway may close before the client's next write
                replies.append(type(exc).__name__)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert started.wait(10)
        with httpx.Client(timeout=30, trust_env=False) as http:
            busy = upload(http, server.url, "second.mp4", b"x")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "10"
            deadline = time.monotonic() + 10
            while (second := upload(http, server.url, "second.mp4", b"x")).status_code == 503:
                assert time.monotonic() < deadline, "the stalled upload kept its slot"
                time.sleep(0.2)
            assert second.status_code == 201  # the silent one was cut off and its slot freed
    finally:
        release.set()
        sender.join()
        server.stop()
    print(f"\nthe stalled client saw: {replies}")
    assert replies in ([408], ["WriteError"], ["RemoteProtocolError"], ["ReadError"]), replies
    assert [obj.key for obj in local_store.list("")] == ["uploads/second.mp4"]
    assert not any(p.name.startswith(TMP_PREFIX) for p in (local_store._root() / "uploads").iterdir())


def test_put_stream_never_replaces_unless_asked_and_leaves_nothing_on_failure(store: MediaStore) -> None:
    """The store primitive under `POST /uploads`: the conditional publish is the race's last word."""
    if isinstance(store, S3MediaStore):
        store = store.model_copy(update={"stream_part_mb": 5})
    key = "uploads/race.mp4"
    store.write_bytes(key, b"first")
    big = os.urandom(6 * MB)  # two parts on S3: the multipart publish is conditional too
    for body in (b"small", big):
        assert store.put_stream(key, chunked(body), replace=False) is None
        assert store.read_bytes(key) == b"first"

    def failing() -> Iterator[bytes]:
        yield from chunked(big)
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.put_stream("uploads/cut.mp4", failing())
    assert not store.exists("uploads/cut.mp4")
    stored = store.put_stream(key, chunked(big))
    assert stored is not None and stored.size == len(big) and store.read_bytes(key) == big
    if isinstance(store, S3MediaStore):
        assert not store._s3().list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    else:
        assert [p.name for p in (store._root() / "uploads").iterdir()] == ["race.mp4"]


def test_an_upload_that_owns_its_legacy_id_keeps_it(gateway, client: httpx.Client) -> None:
    url, store = gateway
    key = "uploads/old talk.mp4"
    legacy = legacy_video_id_for_upload(key)
    store.write_bytes(key, b"old version")
    store.create_bytes(id_claim_key(legacy), json.dumps({"video_id": legacy, "upload_key": key}).encode())
    reply = upload(client, url, "old talk.mp4", b"new version", replace="1")
    assert reply.status_code == 201 and reply.json()["video_id"] == legacy  # what the sensor resolves it to
    fresh = upload(client, url, "new talk.mp4", b"x")
    assert fresh.json()["video_id"] == video_id_for_upload("uploads/new talk.mp4")


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_the_upload_limit_setting_is_checked(value: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTOEDIT_MAX_UPLOAD_MB"):
        GatewaySettings.from_env("http://127.0.0.1:3000", {"AUTOEDIT_JWT_SECRET": SECRET,
                                                           "AUTOEDIT_MAX_UPLOAD_MB": value})  # fmt: skip
    settings = GatewaySettings.from_env("http://127.0.0.1:3000", {"AUTOEDIT_MAX_UPLOAD_MB": "1.5"})
    assert settings.max_upload_bytes == int(1.5 * MB)
