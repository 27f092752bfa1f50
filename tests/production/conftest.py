"""Production-mode fixtures: the pipeline on S3 (moto's server over real HTTP), workers in processes of
their own, and an S3 endpoint that can go down and come back.

Everything talks HTTP to a moto server on a loopback port with fake credentials (the autouse
`fake_aws_credentials` fixture), so no test can reach a real cloud account. Storage is chosen the
production way, through `AUTOEDIT_STORAGE=s3://<bucket>/<prefix>` and `AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import dagster as dg
import pytest

from testsupport.media_factory import ffmpeg

REPO = Path(__file__).resolve().parents[2]
PREFIX = "team/autoedit"
# The render pool limited as in deploy/dagster.yaml (op granularity), to one slot: a slot leaked by
# a dead run would block the next render.
INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
"""

# The same fake identity as `fake_aws_credentials`, for fixtures wider than one test.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def make_clip(path: Path, seconds: float = 2.0, size: str = "320x180") -> Path:
    """testsrc2 picture and a 440 Hz tone: small, fast to analyse, with both streams."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}", "-f", "lavfi",
           "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("production_media") / "clip.mp4")


@dataclass
class Bucket:
    """A bucket on the moto server, seen the way a producer or an operator sees it (plain boto3)."""

    name: str
    endpoint: str
    client: Any

    @property
    def storage(self) -> str:
        """The AUTOEDIT_STORAGE value naming this bucket and prefix."""
        return f"s3://{self.name}/{PREFIX}"

    def upload(self, source: Path, name: str) -> str:
        """A producer drops `source` into uploads/; returns the store key."""
        key = f"uploads/{name}"
        self.client.upload_file(str(source), self.name, f"{PREFIX}/{key}")
        return key

    def objects(self, under: str = "") -> dict[str, dict]:
        """{full key: listing entry} for every object under `PREFIX/under`."""
        found: dict[str, dict] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=under):
            found.update({item["Key"]: item for item in page.get("Contents", ())})
        return found

    def download(self, key: str, target: Path) -> Path:
        self.client.download_file(self.name, f"{PREFIX}/{key}", str(target))
        return target

    def open_multipart_uploads(self) -> list[dict]:
        return self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])


def new_bucket(endpoint: str) -> Bucket:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    name = f"autoedit-prod-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name=name, endpoint=endpoint, client=client)


def fake_aws(mp: pytest.MonkeyPatch) -> None:
    """`fake_aws_credentials` for fixtures wider than one test."""
    for name, value in FAKE_AWS.items():
        mp.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    mp.setenv("NO_PROXY", no_proxy)
    mp.setenv("no_proxy", no_proxy)


def production_env(mp: pytest.MonkeyPatch, bucket: Bucket, dagster_home: Path) -> None:
    """AUTOEDIT_STORAGE/AWS_ENDPOINT_URL naming `bucket`, and DAGSTER_HOME (credentials: `fake_aws`)."""
    mp.setenv("AUTOEDIT_STORAGE", bucket.storage)
    mp.setenv("AWS_ENDPOINT_URL", bucket.endpoint)
    mp.setenv("DAGSTER_HOME", str(dagster_home))


def new_instance(home: Path) -> dg.DagsterInstance:
    """A SQLite instance in `home` that worker processes share through DAGSTER_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(home))


@dataclass
class Production:
    bucket: Bucket
    home: Path
    instance: dg.DagsterInstance


@pytest.fixture
def production(
    moto_endpoint: str,
    fake_aws_credentials: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Production]:
    """A fresh bucket named by AUTOEDIT_STORAGE, and a fresh instance named by DAGSTER_HOME."""
    bucket = new_bucket(moto_endpoint)
    home = tmp_path / "dagster_home"
    instance = new_instance(home)
    production_env(monkeypatch, bucket, home)
    with instance:
        yield Production(bucket=bucket, home=home, instance=instance)


def start_worker(
    partition: str, *, tmpdir: Path, tags: dict[str, str] | None = None, select: list[str] | None = None
) -> subprocess.Popen:
    """`job_runner` in a process of its own, with its own temp folder and working directory.

    It inherits the environment (AUTOEDIT_STORAGE, AWS_*, DAGSTER_HOME) and nothing else.
    """
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.production.job_runner", partition, "--tags", json.dumps(tags or {})]
    if select:
        cmd += ["--select", *select]
    return subprocess.Popen(
        cmd, cwd=tmpdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Wait for a worker; its run id, or a failure showing its stderr."""
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"worker exited {proc.returncode}:\n{err[-4000:]}")
    return out.strip().splitlines()[-1]


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """A loopback TCP forwarder to an HTTP endpoint: it can go down (connections refused, live ones
    cut) and come back on the same port, and can throttle uploads to make transfers observable."""

    def __init__(self, upstream: str, upload_bytes_per_second: float | None = None) -> None:
        parsed = urlparse(upstream)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._rate = upload_bytes_per_second
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def up_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.up)
        timer.daemon = True
        timer.start()
        return timer

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self.accepted += 1
                self._live |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, self._rate), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, rate: float | None) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._live -= {source, sink}


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
