"""Shared fixtures: a session folder of generated media, and the real sample clips."""

from pathlib import Path

import pytest

from testsupport.media_factory import SHARED_MEDIA


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
