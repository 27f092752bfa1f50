"""`autoedit submit --gateway` and `fetch --gateway`: media through a real gateway on loopback (in front
of the fake GraphQL server), into and out of the real local store and the moto S3 server, with no
AUTOEDIT_STORAGE and no AWS credentials in the CLI's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoedit_dagster.gateway.app import Gateway
from autoedit_dagster.gateway.settings import GatewaySettings
from autoedit_dagster.names import render_prefix
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import MediaStore, S3MediaStore
from tests.gateway.conftest import SECRET, ServerThread, token
from tests.remote.conftest import VIDEO_ID, FakeDagster, materialized_node, video_assets_answer

EXPORTS = {"fcpxml": "edit.fcpxml", "fcp7": "edit.fcp7.xml", "edl": "edit.edl", "otio": "edit.otio.json"}


@pytest.fixture
def gateway(fake: FakeDagster, store: MediaStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings = GatewaySettings(upstream=fake.url, jwt_secret=SECRET, rate_limit=0)
    server = ServerThread(Gateway(settings, store=store))
    if isinstance(store, S3MediaStore):
        store._s3()  # the gateway's client holds its credentials: the CLI's environment may lose them
    for name in ("AUTOEDIT_STORAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AUTOEDIT_GATEWAY_URL", raising=False)
    yield server.url
    server.stop()


def test_submit_then_fetch_through_the_gateway(gateway: str, fake: FakeDagster, store: MediaStore, cli, tmp_path):
    clip = tmp_path / "talk.mp4"
    clip.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    operator, viewer = token("operator"), token("viewer")

    refused = cli("submit", str(clip), "--gateway", gateway, "--token", viewer)
    assert refused.code == 2 and "403" in refused.err and "operator" in refused.err
    submitted = cli("submit", str(clip), "--gateway", gateway, "--token", operator, "--json")
    assert submitted.code == 0, submitted.err
    key = "uploads/talk.mp4"
    result = submitted.json()
    assert (result["video_id"], result["upload_uri"], result["run_id"]) == (
        video_id_for_upload(key), store.uri(key), "run-1",
    )  # fmt: skip
    assert store.read_bytes(key) == clip.read_bytes()
    (runs,) = fake.find("AutoeditRuns")  # GraphQL went through the gateway too (--url defaults to it)
    tags = {t["key"]: t["value"] for t in runs.body["variables"]["filter"]["tags"]}
    assert tags["autoedit/upload_etag"] == store.stat(key).etag
    again = cli("submit", str(clip), "--gateway", gateway, "--token", operator)
    assert again.code == 2 and "already exists" in again.err and "pass --replace" in again.err
    path_name = cli("submit", str(clip), "--name", "team/talk.mp4", "--gateway", gateway, "--token", operator)
    assert path_name.code == 2 and "not a path" in path_name.err

    # What the pipeline would have published, and GraphQL reporting it.
    prefix = render_prefix(VIDEO_ID, "tate")
    exports = {name: f"{kind} export".encode() for kind, name in EXPORTS.items()}
    payloads = {"final.mp4": os.urandom(256 * 1024), **exports}
    for name, data in payloads.items():
        store.write_bytes(prefix + name, data)
    entries = {"video": store.uri(prefix + "final.mp4"), **{kind: store.uri(prefix + n) for kind, n in EXPORTS.items()}}
    fake.answers["AutoeditVideoAssets"] = video_assets_answer(
        [materialized_node(["tate", "render"], "tate", "run-1", entries, ("size_matches_profile",))]
    )
    out = tmp_path / "out" / "vertical.mp4"
    fetched = cli("fetch", VIDEO_ID, "-o", str(out), "--exports", "--gateway", gateway, "--token", viewer)
    assert fetched.code == 0, fetched.err
    assert out.read_bytes() == payloads["final.mp4"]
    for kind, name in EXPORTS.items():
        assert out.with_name("vertical" + name.removeprefix("edit")).read_bytes() == payloads[name], kind
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["vertical.mp4", *("vertical" + n.removeprefix("edit") for n in EXPORTS.values())]
    )  # no temp file left


def test_gateway_url_and_token_from_the_environment(gateway: str, store: MediaStore, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOEDIT_GATEWAY_URL", gateway)
    monkeypatch.setenv("AUTOEDIT_TOKEN", token("operator"))
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"\x00" * 1000)
    submitted = cli("submit", str(clip), "--json")
    assert submitted.code == 0, submitted.err
    assert store.read_bytes("uploads/clip.mov") == clip.read_bytes()
    assert not Path("uploads").exists()
