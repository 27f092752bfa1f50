"""The Dagster UI in headless Chromium: a real webserver on a temp instance with one finished video.

Before the webserver starts, `video_job` runs in-process on the same instance and storage for a
2-second generated clip, so the pages have a materialized partition to show. The browser is
Debian's `chromium` (`/usr/bin/chromium`, or CHROMIUM_PATH) driven by Playwright with a fresh
profile; Playwright never downloads a browser here. Without chromium the tests are skipped with
the reason, except under CI (CI=true), where they fail: CI installs it (`.ci/run`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.servers import Instance, Server, Servers
from testsupport.services import redis_url  # noqa: F401  (a fixture, found by name; pytest_plugins is top-level only)

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
UPLOAD = "uploads/ui-demo.mp4"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).exists():
        return path
    message = f"Debian's chromium is not installed ({path}): apt-get install chromium (see .ci/run)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class Deployment:
    """The instance with one rendered video, and the webserver serving it."""

    def __init__(self, instance: Instance, servers: Servers, webserver: Server, video_id: str) -> None:
        self.instance = instance
        self.servers = servers
        self.webserver = webserver
        self.video_id = video_id


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    chromium_path()  # skip before the expensive part
    instance = Instance.create(tmp_path_factory.mktemp("ui"))
    video_id = instance.render_video(UPLOAD)
    with Servers(instance) as servers:
        webserver = servers.start_webserver()
        servers.wait_webserver(webserver)
        yield Deployment(instance, servers, webserver, video_id)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory):
    """A Chromium context with a fresh profile directory, closed after the module."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900},
        )  # fmt: skip
        context.set_default_timeout(60_000)  # the first GraphQL answers of a loaded 2-core machine
        try:
            yield context
        finally:
            context.close()
