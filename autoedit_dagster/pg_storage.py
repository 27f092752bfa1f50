"""The instance's PostgreSQL storage with its connections kept open (deploy/dagster.yaml).

dagster-postgres opens a new database connection for every group of statements (SQLAlchemy's
`NullPool`). Creating a run writes ~16 event rows (its planned materializations and checks, the
enqueue), each in one to three connections, and every connection costs PostgreSQL a backend
process and a session set-up: that, not the rows, was most of the upload sensor's tick and of a
backfill's submission (bench/SENSOR_TICK.md, bench/BACKFILL_RATE.md). Dagster's webserver keeps
one connection open per storage (`optimize_for_webserver`); this storage does the same in every
process that loads the instance: the daemon, the run workers and the Celery tasks.

Each of the three storages keeps one connection idle; threads that write at the same time get
extra ones that close after use. A kept connection is checked before use (`pool_pre_ping`), so a
database restart costs a reconnect instead of a failed write, and one older than
`POOL_RECYCLE_S` is replaced. A forked child never uses its parent's connections.
`DagsterInstance.dispose` closes the run and event log storages' connections; it leaves the
schedule storage alone, whose connection closes when the instance is collected.
"""

from __future__ import annotations

import os
import weakref
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

# Connections kept idle per storage, and extra ones threads may open at once (closed after use).
POOL_SIZE = 1
MAX_OVERFLOW = 10
# A kept connection is replaced after this long (a proxy or load balancer may cut idle ones).
POOL_RECYCLE_S = 3600

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_parents_connections() -> None:
    # SQLAlchemy's advice for a fork: the child drops the pool without closing the parent's sockets.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parents_connections)


def pooled_engine(postgres_url: str, token_provider: PgTokenProvider | None = None) -> Engine:
    """An engine that keeps `POOL_SIZE` connections open, as dagster-postgres' storages use them."""
    engine = create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=True,
    )
    _engines.add(engine)
    return engine


class _KeptConnections:
    """Mixed into a dagster-postgres storage: its engine keeps connections, closed on `dispose`."""

    _engine: Engine

    def keep_connections(self, postgres_url: str, token_provider: PgTokenProvider | None) -> None:
        # The attribute Dagster's own `optimize_for_webserver` replaces; a test checks it is used.
        self._engine = pooled_engine(postgres_url, token_provider)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
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
