"""A whole deployment on loopback: dagster-daemon, dagster-webserver and `autoedit gateway` in front.

All three run as real processes (see `testsupport/servers.py`) on a temporary instance and temporary
local storage; the gateway uses the real Redis of `testsupport.services` (database 7) and its default
rate limit. The remote CLI is the installed `autoedit` command, run as a subprocess with the
storage the servers use.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testsupport.servers import REPO, Instance, Server, Servers, binary, make_clip
from testsupport.services import redis_url  # noqa: F401  (a fixture, found by name; pytest_plugins is top-level only)


@dataclass
class Stack:
    instance: Instance
    servers: Servers
    webserver: Server
    gateway: Server

    def autoedit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`autoedit ARGS` with the servers' storage (submit and fetch move media through it)."""
        return subprocess.run([binary("autoedit"), *args], cwd=REPO, env=self.instance.env(), capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:  # noqa: F811
    instance = Instance.create(tmp_path_factory.mktemp("e2e"))
    with Servers(instance) as servers:
        # All three start at once; the daemon's sensor loop begins ticking while the webserver loads.
        servers.start_daemon()
        webserver = servers.start_webserver()
        gateway = servers.start_gateway(webserver.url, redis_url)
        servers.wait_webserver(webserver)
        servers.wait_gateway(gateway)
        yield Stack(instance, servers, webserver, gateway)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "gateway-talk.mp4")
