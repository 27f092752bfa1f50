"""The instance's PostgreSQL storage with its connections kept open (deploy/dagster.yaml).

dagster-postgres opens a new database connection for every group of statements (SQLAlchemy's
`NullPool`). Creating a run writes ~16 event rows (its planned materializations and checks, the
enqueue), each in one to three connections, and every connection costs PostgreSQL a backend
process and a session set-up: that, not the rows, was most of the upload sensor's tick and of a
backfill's submission (bench/SENSOR_TICK.md, bench/BACKFILL_RATE.md). Dagster's webserver keeps
one connection open per storage (`optimize_for_webserver`); this storage does the same in every
process that loads the instance: the daemon, the run workers and the Celery tasks.

The connections belong to the process, not to an instance: every storage of every instance the
process loads for the same database shares one engine, which keeps at most `POOL_SIZE` connections
idle, and more while threads write at once (those close after use). A process that builds an
instance per task and never disposes it (a Celery worker runs each step that way) therefore holds
no more connections than one that builds a single instance. A kept connection is checked before
use (`pool_pre_ping`), so a database restart costs a reconnect instead of a failed write, and one
older than `POOL_RECYCLE_S` is replaced. A forked child never uses its parent's connections.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.config import PostgresStorageConfig
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider
    from sqlalchemy.engine import Engine

# Connections a process keeps idle per database (one for each of the three storages), and extra
# ones its threads may open at once (closed after use).
POOL_SIZE = 3
MAX_OVERFLOW = 10
# A kept connection is replaced after this long (a proxy or load balancer may cut idle ones).
POOL_RECYCLE_S = 3600

# The process's engines by database URL (an engine is thread-safe; its pool is the process's).
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _forget_parents_connections() -> None:
    # SQLAlchemy's advice for a fork: the child drops the pool without closing the parent's sockets.
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_forget_parents_connections)


def _new_engine(postgres_url: str, token_provider: PgTokenProvider | None) -> Engine:
    return create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=True,
    )


def pooled_engine(postgres_url: str, token_provider: PgTokenProvider | None = None) -> Engine:
    """The process's engine for `postgres_url`, which keeps up to `POOL_SIZE` connections open.

    With a token provider (cloud IAM authentication: one per instance loaded) the engine is the
    storage's own, closed on its `dispose`.
    """
    if token_provider is not None:
        return _new_engine(postgres_url, token_provider)
    with _engines_lock:
        if postgres_url not in _engines:
            _engines[postgres_url] = _new_engine(postgres_url, None)
        return _engines[postgres_url]


class _KeptConnections:
    """Mixed into a dagster-postgres storage: it uses the process's engine (`pooled_engine`)."""

    _engine: Engine

    def keep_connections(self, postgres_url: str, token_provider: PgTokenProvider | None) -> None:
        # The attribute Dagster's own `optimize_for_webserver` replaces; a test checks it is used.
        self._engine = pooled_engine(postgres_url, token_provider)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        if self._engine not in _engines.values():  # its own (a token provider's, the webserver's)
            self._engine.dispose()


class KeptRunStorage(_KeptConnections, PostgresRunStorage):
    pass


class KeptEventLogStorage(_KeptConnections, PostgresEventLogStorage):
    pass


class KeptScheduleStorage(_KeptConnections, PostgresScheduleStorage):
    pass


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres' storage (`storage: postgres:`, the same config) on kept connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = KeptRunStorage(postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._event_log_storage = KeptEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = KeptScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.keep_connections(postgres_url, token_provider)
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: PostgresStorageConfig | dict[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
