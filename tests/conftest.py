"""Shared fixtures: a session folder of generated media, the real sample clips, and storage (a moto S3
server, fake AWS credentials, `store` on both backends: local and S3)."""

from pathlib import Path

import pytest

from testsupport.media_factory import SHARED_MEDIA
from testsupport.s3_server import (  # noqa: F401  (fixtures are found by name)
    fake_aws_credentials,
    local_store,
    moto_endpoint,
    s3_bucket,
    s3_store,
    store,
)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def bunny() -> Path:
    path = SHARED_MEDIA / "bigbuckbunny.mp4"
    if not path.exists():
        pytest.skip(f"sample media missing: {path}")
    return path


@pytest.fixture(scope="session")
def carphone() -> Path:
    path = SHARED_MEDIA / "carphone_pristine.mp4"
    if not path.exists():
        pytest.skip(f"sample media missing: {path}")
    return path
