"""Fixtures for the real services the production-mode tests talk to (PostgreSQL, Redis).

Use with `pytest_plugins = ["testsupport.services"]` in a test folder's conftest. Locally, a missing
service skips those tests with the reason shown; under CI (CI=true) it fails them, because CI
must run them. Environment: AUTOEDIT_TEST_PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres),
AUTOEDIT_TEST_REDIS_URL (default redis://127.0.0.1:6379).
"""

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PGHOST = os.environ.get("AUTOEDIT_TEST_PGHOST", "127.0.0.1")
PGPORT = int(os.environ.get("AUTOEDIT_TEST_PGPORT", "5432"))
PGUSER = os.environ.get("AUTOEDIT_TEST_PGUSER", "postgres")
REDIS_URL = os.environ.get("AUTOEDIT_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port} (see README: running the service tests)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        """The libpq variables deploy/dagster.yaml reads."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": "",
                "PGDATABASE": self.database}  # fmt: skip


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[PostgresDatabase]:
    """A new, empty database on the real server, dropped on exit."""
    require("PostgreSQL", PGHOST, PGPORT)
    import psycopg2

    name = f"autoedit_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(PGHOST, PGPORT, PGUSER, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    """A fresh database on the real server for this test session, dropped afterwards."""
    with fresh_postgres_database() as database:
        yield database


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis database index of its own on the real server, flushed before use."""
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    require("Redis", parsed.hostname or "127.0.0.1", parsed.port or 6379)
    import redis

    url = f"{REDIS_URL.rstrip('/')}/7"
    redis.Redis.from_url(url).flushdb()
    return url


@contextlib.contextmanager
def instance_on(database: PostgresDatabase, config: Path, home: Path) -> Iterator:
    """`DagsterInstance.get()` from `config` copied into `home`, with only DAGSTER_HOME and the libpq
    variables set (as an operator runs deploy/dagster.yaml); disposed on exit."""
    import dagster as dg

    shutil.copy(config, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        for name, value in database.env().items():
            mp.setenv(name, value)
        instance = dg.DagsterInstance.get()
        try:
            yield instance
        finally:
            instance.dispose()
