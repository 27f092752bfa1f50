"""Real servers on free loopback ports for the browser and end-to-end tests.

A temporary instance (DAGSTER_HOME holding a copy of deploy/dagster.local.yaml) and temporary
local storage (AUTOEDIT_STORAGE), and on them dagster-webserver, dagster-daemon and
`autoedit gateway`, each a process in a process group of its own, with its output in a log file.
`Servers` is a context manager: whatever was started is stopped (the whole process group, so the
code servers and run workers go too), also when a test fails half-way.

Copied, not imported, from `tests/remote/conftest.py` (the deployment, `make_clip`) and
`tests/gateway/test_webserver_e2e.py` (the gateway process), so those suites stay untouched.
The servers get a clean environment: no AUTOEDIT_*, DAGSTER_* or AWS_* variable of the caller's
leaks in, only what `Instance.env` and the `start_*` arguments set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx

from testsupport.media_factory import ffmpeg

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "servers-test-secret-" + "0123456789abcdef" * 2
READY_SECONDS = 180.0  # a loaded 2-core machine; an idle one needs ~20 s for the webserver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binary(name: str) -> str:
    """A console script of this interpreter's environment (`dagster-webserver`, `autoedit`)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def make_clip(path: Path, seconds: float = 2.0, size: str = "320x180", tone: int = 440) -> Path:
    """testsrc2 picture and a sine tone (another `tone` makes other bytes: a distinct upload)."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d={seconds}", "-f", "lavfi",
           "-i", f"sine=frequency={tone}:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    return path


@contextlib.contextmanager
def env_vars(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block (module-scoped fixtures cannot use `monkeypatch`)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Instance:
    """A temporary Dagster instance and the local storage the code location uses with it."""

    root: Path
    home: Path
    storage: Path

    @classmethod
    def create(cls, root: Path) -> Instance:
        home, storage = root / "dagster_home", root / "storage"
        home.mkdir(parents=True)
        storage.mkdir()
        shutil.copyfile(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        instance = cls(root, home, storage)
        # Create the SQLite storages once, here: two processes creating them at the same moment race
        # in alembic's revision check and one of them dies.
        with instance.open():
            pass
        return instance

    @contextlib.contextmanager
    def open(self) -> Iterator[dg.DagsterInstance]:
        with env_vars({"DAGSTER_HOME": str(self.home)}), dg.DagsterInstance.get() as instance:
            yield instance

    def render_video(self, upload: str) -> str:
        """`video_job` in-process for a clip generated at `upload` in the storage; the video id."""
        from autoedit_dagster.definitions import build_definitions
        from autoedit_dagster.partitions import video_id_for_upload
        from autoedit_dagster.resources import LocalMediaStore

        clip = self.storage / upload
        clip.parent.mkdir(parents=True, exist_ok=True)
        make_clip(clip)
        video_id = video_id_for_upload(upload)
        job = build_definitions(LocalMediaStore(root=str(self.storage))).resolve_job_def("video_job")
        with self.open() as dagster_instance:
            dagster_instance.add_dynamic_partitions("videos", [video_id])
            if not job.execute_in_process(instance=dagster_instance, partition_key=video_id).success:
                raise RuntimeError(f"video_job failed for {upload}")
        return video_id

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOEDIT_", "DAGSTER_", "AWS_"))}
        env.update(DAGSTER_HOME=str(self.home), AUTOEDIT_STORAGE=str(self.storage), PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(REPO), **extra)  # fmt: skip
        return env


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.process.poll()}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group (the server, its code server, run workers), then SIGKILL what is left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        # Children may outlive the leader: the whole group goes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


@dataclass
class Servers(contextlib.AbstractContextManager):
    """Processes started on `instance`; all stopped (newest first) when the block ends."""

    instance: Instance
    started: list[Server] = field(default_factory=list)

    def __exit__(self, *exc_info: object) -> None:
        for server in reversed(self.started):
            server.stop()

    def _start(self, name: str, command: list[str], env: dict[str, str], url: str = "") -> Server:
        log = self.instance.root / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # fmt: skip
        server = Server(name, process, log, url)
        self.started.append(server)
        return server

    def start_daemon(self, extra_env: dict[str, str] | None = None) -> Server:
        env = {**self.instance.env(), **(extra_env or {})}
        return self._start("daemon", [binary("dagster-daemon"), "run", "-w", "workspace.yaml"], env)

    def start_webserver(self, extra_env: dict[str, str] | None = None) -> Server:
        port = free_port()
        command = [binary("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
        env = {**self.instance.env(), **(extra_env or {})}
        return self._start("webserver", command, env, f"http://127.0.0.1:{port}")

    def start_gateway(
        self,
        upstream: str,
        redis_url: str,
        rate_limit: int | None = None,
        name: str = "gateway",
        extra_env: dict[str, str] | None = None,
    ) -> Server:
        """`autoedit gateway` in front of `upstream`, its tokens signed with JWT_SECRET, its /metrics on the
        instance; `rate_limit` None leaves AUTOEDIT_RATE_LIMIT unset (the gateway's default, 100 a minute)."""
        port = free_port()
        env = self.instance.env(
            AUTOEDIT_JWT_SECRET=JWT_SECRET, AUTOEDIT_REDIS_URL=redis_url, AUTOEDIT_LOG_FORMAT="json"
        )
        if rate_limit is not None:
            env["AUTOEDIT_RATE_LIMIT"] = str(rate_limit)
        env.update(extra_env or {})
        command = [binary("autoedit"), "gateway", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port)]
        return self._start(name, command, env, f"http://127.0.0.1:{port}")

    def tail(self) -> str:
        return "\n".join(server.tail() for server in self.started)

    def wait(self, ready: Callable[[], bool], what: str, timeout: float = READY_SECONDS) -> None:
        """Poll `ready()` until true; fail early, with the logs, if a server died."""
        deadline = time.monotonic() + timeout
        while True:
            for server in self.started:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.5)

    def wait_webserver(self, webserver: Server) -> None:
        """Until the webserver answers and serves the code location's assets (its code server is up)."""
        query = {"query": 'query Ready { assetNodes(assetKeys: [{path: ["source_video"]}]) { id } }'}

        def ready() -> bool:
            response = httpx.post(f"{webserver.url}/graphql", json=query, timeout=5, trust_env=False)
            return response.status_code == 200 and bool((response.json().get("data") or {}).get("assetNodes"))

        self.wait(ready, f"dagster-webserver at {webserver.url}")

    def wait_gateway(self, gateway: Server) -> None:
        """Until `/healthz` is 200: the gateway, its upstream and Redis all answer."""
        self.wait(lambda: httpx.get(f"{gateway.url}/healthz", timeout=5, trust_env=False).status_code == 200,
                  f"gateway at {gateway.url}")  # fmt: skip
