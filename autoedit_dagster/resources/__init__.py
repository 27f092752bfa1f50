"""Dagster resources: the MediaStore (local folder or S3) and the IO managers built on it.

`build_resources()` is the one place that chooses storage; `definitions.py` passes its result to
`Definitions(resources=...)`. Environment read (via `media_store_from_env`): `AUTOEDIT_STORAGE`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, and boto3's standard `AWS_*` credential chain.
"""

from __future__ import annotations

from typing import Any

from autoedit_dagster.resources.io_managers import PolarsParquetIOManager, PydanticJsonIOManager
from autoedit_dagster.resources.media_store import (
    PROTECTED_PREFIXES,
    LocalMediaStore,
    MediaStore,
    S3MediaStore,
    StoredObject,
    default_storage_root,
    media_store_from_env,
)

# Resource keys: assets take `store: MediaStore` and pick an IO manager with `io_manager_key=`.
STORE_KEY = "store"
PARQUET_IO_MANAGER_KEY = "parquet_io_manager"
JSON_IO_MANAGER_KEY = "json_io_manager"


def build_resources(store: MediaStore | None = None) -> dict[str, Any]:
    """The store and both IO managers on it; the store defaults to `media_store_from_env()`."""
    store = store if store is not None else media_store_from_env()
    return {
        STORE_KEY: store,
        PARQUET_IO_MANAGER_KEY: PolarsParquetIOManager(store=store),
        JSON_IO_MANAGER_KEY: PydanticJsonIOManager(store=store),
    }


__all__ = [
    "JSON_IO_MANAGER_KEY",
    "PARQUET_IO_MANAGER_KEY",
    "PROTECTED_PREFIXES",
    "STORE_KEY",
    "LocalMediaStore",
    "MediaStore",
    "PolarsParquetIOManager",
    "PydanticJsonIOManager",
    "S3MediaStore",
    "StoredObject",
    "build_resources",
    "default_storage_root",
    "media_store_from_env",
]
