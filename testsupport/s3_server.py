"""Pytest fixtures for storage tests: moto's S3 server over real HTTP, and fake AWS credentials.

`fake_aws_credentials` is autouse wherever this module is imported into a conftest, so no test in
those folders can reach a real AWS account: credentials are fake, profiles, config files, the
instance metadata service and any endpoint override are cleared. `store` runs a test on both
backends (a local folder and a fresh bucket on the moto server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from autoedit_dagster.resources import LocalMediaStore, MediaStore, S3MediaStore

_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AUTOEDIT_STORAGE",
)


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # A proxy from the environment must not sit between boto3 and the loopback server.
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 over real HTTP on a free loopback port: its `http://127.0.0.1:<port>`."""
    # werkzeug logs every request at INFO on stderr: thousands of lines in a long run.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """`http://127.0.0.1:<free port>` of a moto server shared by the session."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(moto_endpoint: str, fake_aws_credentials: None) -> str:
    """A new, empty bucket: tests never see each other's objects."""
    name = f"autoedit-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str) -> S3MediaStore:
    return S3MediaStore(bucket=s3_bucket, prefix="team/autoedit", endpoint_url=moto_endpoint)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalMediaStore:
    return LocalMediaStore(root=str(tmp_path / "storage"))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> MediaStore:
    """The same test on a local folder and on S3."""
    return request.getfixturevalue(f"{request.param}_store")
