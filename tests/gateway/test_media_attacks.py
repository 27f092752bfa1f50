"""Attacks on `POST /uploads` and `GET /media/...` over loopback, each of which once got through:
a burst past the upload limit, a trickle holding a slot, invisible or undecodable names, and
the report and editor exports rendered inline from the gateway's origin."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from autoedit_dagster.gateway.app import Gateway
from autoedit_dagster.gateway.settings import GatewaySettings
from autoedit_dagster.names import REPORT_NAME, render_prefix
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import LocalMediaStore
from autoedit_dagster.resources.media_store import TMP_PREFIX

from .conftest import SECRET, ServerThread, bearer, token

OCTETS = {"Content-Type": "application/octet-stream"}


def start(fake_upstream: str, store: LocalMediaStore, **media: float) -> ServerThread:
    gateway = Gateway(GatewaySettings(upstream=fake_upstream, jwt_secret=SECRET, rate_limit=0), store=store)
    for name, value in media.items():
        setattr(gateway.media, name, value)
    return ServerThread(gateway)


def post(url: str, name: str, body) -> int | str:
    with httpx.Client(timeout=30, trust_env=False) as http:
        try:
            reply = http.post(f"{url}/uploads", params={"name": name}, content=body,
                              headers={**bearer(token("operator")), **OCTETS})  # fmt: skip
        except httpx.HTTPError as exc:  # the gateway may answer and close before the body is all sent
            return type(exc).__name__
        return reply.status_code


def open_upload(port: int, name: str, auth: str, framing: str = "Transfer-Encoding: chunked") -> socket.socket:
    """A raw upload whose headers (and, chunked, a first 3-byte chunk) are sent; the rest is the test's."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    first = "3\r\nabc\r\n" if "chunked" in framing else ""
    sock.sendall(f"POST /uploads?name={name} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                 f"Content-Type: video/mp4\r\n{framing}\r\n\r\n{first}".encode())  # fmt: skip
    return sock


def test_a_burst_of_uploads_gets_one_slot_and_503s(fake_upstream: str, local_store: LocalMediaStore) -> None:
    """Ten uploads at once against one slot: the check once passed several of them together (each
    then waited for a thread, so the limit queued uploads instead of refusing them)."""
    server = start(fake_upstream, local_store, max_concurrent=1)
    auth = bearer(token("operator"))["Authorization"]
    sockets = [open_upload(server.port, f"burst{i}.mp4", auth) for i in range(10)]  # back to back
    try:
        answers: list[bytes | None] = []
        for sock in sockets:
            sock.settimeout(5)  # a loaded machine answers a 503 late, never this late
            try:
                answers.append(sock.recv(200))
            except TimeoutError:  # still uploading: it has the slot
                answers.append(None)
        holders = [sock for sock, answer in zip(sockets, answers, strict=True) if answer is None]
        for sock in holders:
            sock.sendall(b"0\r\n\r\n")
        finished = [sock.recv(200) for sock in holders]
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    refused = [answer for answer in answers if answer is not None]
    assert len(holders) == 1 and all(b" 503 " in answer for answer in refused), answers
    assert b" 201 " in finished[0]
    assert len(list(local_store.list("uploads/"))) == 1


def test_a_trickle_is_cut_off_like_silence(fake_upstream: str, local_store: LocalMediaStore) -> None:
    """A byte every 0.3 s is never silent for the 1 s idle limit, but brings less than the
    window's minimum: cut off (408) within about a window, nothing kept."""
    server = start(fake_upstream, local_store, idle_seconds=1.0, min_window_bytes=1024)

    def trickle() -> Iterator[bytes]:
        for _ in range(30):  # 9 s if nobody stops it
            yield b"a"
            time.sleep(0.3)

    try:
        began = time.monotonic()
        status = post(server.url, "trickle.mp4", trickle())
        elapsed = time.monotonic() - began
        steady = post(server.url, "steady.mp4", (b"x" * 2048 for _ in range(3)))
    finally:
        server.stop()
    assert status in (408, "WriteError", "RemoteProtocolError", "ReadError"), status
    assert elapsed < 6, f"the trickle held its slot {elapsed:.1f} s"
    assert steady == 201
    assert [obj.key for obj in local_store.list("")] == ["uploads/steady.mp4"]
    assert not any(p.name.startswith(TMP_PREFIX) for p in (local_store._root() / "uploads").iterdir())


@pytest.mark.parametrize(
    "query",
    [
        "x%C2%85.mp4", "talk%E2%80%AEgpj.mp4", "a%E2%80%8Bb.mp4", "%FF.mp4", "%ED%A0%80.mp4", "%C0%AE%C0%AE.mp4",
        "a.mp4&name=b.mp4", "a.mp4&replace=0&replace=1",
    ],
)  # fmt: skip
def test_invisible_or_undecodable_names_and_doubled_parameters_are_refused(
    start_gateway, fake_upstream: str, local_store: LocalMediaStore, client: httpx.Client, query: str
) -> None:
    """A C1 control, a right-to-left override, a zero-width space; bytes that are not UTF-8
    (decoded to U+FFFD, so two different names would collide); a parameter given twice (a proxy
    may read the first, we read the last): all were stored before."""
    url = start_gateway(fake_upstream, rate_limit=0, store=local_store)
    reply = client.post(f"{url}/uploads?name={query}", content=b"x", headers={**bearer(token("operator")), **OCTETS})
    assert reply.status_code == 400, reply.text
    assert list(local_store.list("")) == []


def test_the_report_and_editor_exports_are_downloads_never_pages(
    start_gateway, fake_upstream: str, local_store: LocalMediaStore, client: httpx.Client
) -> None:
    """XML with an XHTML script (text from an upload can reach the exports) was served inline as
    application/xml from the gateway's origin: a page of ours running that script."""
    url = start_gateway(fake_upstream, rate_limit=0, store=local_store)
    video = video_id_for_upload("uploads/talk.mp4")
    prefix = render_prefix(video, "tate")
    local_store.write_bytes(prefix + "final.mp4", os.urandom(4096))
    local_store.write_bytes(prefix + REPORT_NAME, json.dumps({"title": "<script>alert(1)</script>"}).encode())
    local_store.write_bytes(prefix + "edit.fcp7.xml",
                            b'<x xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></x>')  # fmt: skip
    viewer = bearer(token("viewer"))
    for base in ("/media", "/review/media"):
        for name in (REPORT_NAME, "edit.fcp7.xml"):
            reply = client.get(f"{url}{base}/{video}/tate/{name}", headers=viewer)
            assert reply.status_code == 200
            assert reply.headers["content-disposition"] == f'attachment; filename="{video}-tate-{name}"'
            assert "sandbox" in reply.headers["content-security-policy"]
            assert reply.headers["x-content-type-options"] == "nosniff"
        video_part = client.get(f"{url}{base}/{video}/tate/final.mp4", headers={**viewer, "Range": "bytes=0-9"})
        assert video_part.status_code == 206 and "content-disposition" not in video_part.headers  # plays inline
    review_part = client.get(f"{url}/review/media/{video}/tate/final.mp4", headers={**viewer, "Range": "bytes=0-9"})
    assert review_part.headers["x-frame-options"] == "DENY"  # the review page's headers on a range too


def test_replacing_when_the_webserver_cannot_say_whether_it_is_processing_is_refused(
    start_gateway, local_store: LocalMediaStore, client: httpx.Client
) -> None:
    """Fail closed: no answer about the video's runs is not a yes to `replace=1` (a new name needs no answer)."""
    url = start_gateway("http://127.0.0.1:9", rate_limit=0, store=local_store)  # the discard port: nobody there
    local_store.write_bytes("uploads/talk.mp4", b"first")
    headers = {**bearer(token("operator")), **OCTETS}
    replaced = client.post(f"{url}/uploads?name=talk.mp4&replace=1", content=b"second", headers=headers)
    assert replaced.status_code == 502 and "GraphQL" in replaced.json()["detail"]
    assert local_store.read_bytes("uploads/talk.mp4") == b"first"
    assert client.post(f"{url}/uploads?name=new.mp4&replace=1", content=b"x", headers=headers).status_code == 201


def test_a_symbolic_link_among_the_renders_is_never_served(
    start_gateway, fake_upstream: str, local_store: LocalMediaStore, client: httpx.Client
) -> None:
    """Links inside the store's root were followed: one planted in renders/ (by anyone who can
    write the shared folder) served a staged, unverified render, another video's source or an id claim."""
    url = start_gateway(fake_upstream, rate_limit=0, store=local_store)
    root = local_store._root()
    video, other = video_id_for_upload("uploads/talk.mp4"), video_id_for_upload("uploads/other.mp4")
    local_store.write_bytes(f"staging/run-1/{video}/tate/final.mp4", b"staged, not verified")
    local_store.write_bytes("uploads/secret.mp4", b"someone else's source")
    local_store.write_bytes(render_prefix(other, "square") + "final.mp4", b"published")
    (root / "renders" / video / "tate").mkdir(parents=True)
    (root / "renders" / video / "tate" / "final.mp4").symlink_to(root / f"staging/run-1/{video}/tate/final.mp4")
    (root / "renders" / video / "tate" / "thumb.jpg").symlink_to(root / "uploads/secret.mp4")
    (root / "renders" / other / "tate").symlink_to(root / f"staging/run-1/{video}/tate")  # a linked folder
    viewer = bearer(token("viewer"))
    for path in (f"{video}/tate/final.mp4", f"{video}/tate/thumb.jpg", f"{other}/tate/final.mp4"):
        reply = client.get(f"{url}/media/{path}", headers=viewer)
        assert reply.status_code == 404 and b"staged" not in reply.content and b"source" not in reply.content, path
    assert client.get(f"{url}/media/{other}/square/final.mp4", headers=viewer).content == b"published"


def test_an_upload_that_would_fill_the_disk_is_refused_at_once(
    fake_upstream: str, local_store: LocalMediaStore
) -> None:
    """With a generous limit, a declared length beyond the disk's free space was taken in until the
    disk filled (here: until the idle cut-off); now 507 before a byte is read."""
    gateway = Gateway(
        GatewaySettings(upstream=fake_upstream, jwt_secret=SECRET, rate_limit=0, max_upload_bytes=1 << 60),
        store=local_store,
    )
    gateway.media.idle_seconds = 2.0
    server = ServerThread(gateway)
    free = shutil.disk_usage(local_store._root().parent).free
    try:
        auth = bearer(token("operator"))["Authorization"]
        with open_upload(server.port, "huge.mp4", auth, f"Content-Length: {free}") as sock:
            began = time.monotonic()
            answer = sock.recv(4096)
            elapsed = time.monotonic() - began
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 507 ") and b"do not fit" in answer, answer
    assert elapsed < 5  # at once (before any idle cut-off: the assertion on 507 tells them apart)
    assert list(local_store.list("")) == []


def test_one_token_cannot_take_every_upload_slot(fake_upstream: str, local_store: LocalMediaStore) -> None:
    """Three slots: one token's three slow uploads once took them all and another operator got 503."""
    server = start(fake_upstream, local_store, max_concurrent=3, max_per_client=2)
    greedy = bearer(token("operator", subject="greedy"))["Authorization"]
    sockets = []
    try:
        for i in range(3):
            sockets.append(open_upload(server.port, f"slow{i}.mp4", greedy))
            time.sleep(0.3)  # one after the other: the slot check is not what is tested here
        sockets[2].settimeout(3)
        third = sockets[2].recv(500)
        other = post(server.url, "other.mp4", b"x")  # another operator (a token of its own)
        for sock in sockets[:2]:
            sock.sendall(b"0\r\n\r\n")
        finished = [sock.recv(200) for sock in sockets[:2]]
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    assert b" 503 " in third and b"this token already has 2 uploads" in third, third
    assert other == 201
    assert all(b" 201 " in answer for answer in finished)
    assert sorted(obj.key for obj in local_store.list("")) == ["uploads/other.mp4", "uploads/slow0.mp4",
                                                               "uploads/slow1.mp4"]  # fmt: skip
