"""IO managers over the MediaStore: polars tables as parquet, small pydantic values as JSON.

Layout (same on a local folder and on S3, written atomically through the store):

- partitioned (by video): ``work/<video_id>/<asset>.<ext>``, the asset key's path as folders
  (``work/<video_id>/tate/crop_path.parquet``);
- unpartitioned: ``catalog/<asset>.<ext>`` (e.g. ``catalog/video_catalog.parquet``).

An input that spans several partitions (an unpartitioned asset reading a per-video one) is
loaded as ``{partition_key: value}``; partitions never materialized raise, unless the input sets
``metadata={"allow_missing_partitions": True}``. Reads no environment variables.
"""

import contextlib
import json
import os
import tempfile
import typing
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import polars as pl
import pydantic
import pydantic_core
from pydantic import Field

from autoedit_dagster.names import CATALOG_PREFIX, WORK_PREFIX
from autoedit_dagster.resources.media_store import MediaStore


def _partition_folder(partition_key: str) -> str:
    """The folder of one partition key, refused if it would escape or nest."""
    if not partition_key or partition_key in (".", "..") or "/" in partition_key or "\\" in partition_key:
        raise ValueError(f"partition key {partition_key!r} is not usable as a storage folder")
    return partition_key


class _StoreIOManager(dg.ConfigurableIOManager):
    """Shared key layout and partition handling; subclasses encode and decode one value."""

    store: dg.ResourceDependency[MediaStore]

    extension: ClassVar[str]

    def storage_key(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> str:
        """The store key of one asset partition (or of the unpartitioned asset)."""
        name = "/".join(asset_key.path)
        if partition_key is None:
            return f"{CATALOG_PREFIX}{name}.{self.extension}"
        return f"{WORK_PREFIX}{_partition_folder(partition_key)}/{name}.{self.extension}"

    # -- hooks for subclasses --------------------------------------------------------------

    @abstractmethod
    def _write(self, context: dg.OutputContext, key: str, obj: Any) -> dict[str, Any]:
        """Store `obj` at `key` atomically; return output metadata for the UI."""

    @abstractmethod
    def _read(self, context: dg.InputContext, key: str, annotation: Any) -> Any: ...

    # -- dagster IOManager API -------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            # Assets that return nothing (they wrote media through the store) have nothing to save.
            return
        if not context.has_asset_key:
            raise dg.DagsterInvariantViolationError(f"{type(self).__name__} only stores asset outputs")
        if not context.has_asset_partitions:
            key = self.storage_key(context.asset_key)
            self._publish(context, key, obj)
            return
        partition_keys = list(context.asset_partition_keys)
        if len(partition_keys) == 1:
            key = self.storage_key(context.asset_key, partition_keys[0])
            self._publish(context, key, obj)
            return
        # A run over several partitions returns {partition_key: value}, one file each.
        if not isinstance(obj, Mapping) or set(obj) != set(partition_keys):
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} ran for {len(partition_keys)} partitions and must "
                "return a dict keyed by partition key"
            )
        for partition_key, value in obj.items():
            key = self.storage_key(context.asset_key, partition_key)
            self._write(context, key, value)
        context.add_output_metadata({"partitions": len(partition_keys)})

    def _publish(self, context: dg.OutputContext, key: str, obj: Any) -> None:
        metadata = self._write(context, key, obj)
        context.add_output_metadata({**metadata, "uri": dg.MetadataValue.path(self.store.uri(key))})

    def load_input(self, context: dg.InputContext) -> Any:
        annotation = self._annotation(context)
        if not context.has_asset_partitions:
            return self._read(context, self.storage_key(context.asset_key), annotation)
        partition_keys = list(context.asset_partition_keys)
        if len(partition_keys) == 1 and not _is_mapping_type(annotation):
            key = self.storage_key(context.asset_key, partition_keys[0])
            return self._read(context, key, annotation)
        # Fan-in: {partition_key: value}; a `dict[str, T]` annotation types each value as T.
        value_type = _mapping_value_type(annotation)
        allow_missing = bool(context.definition_metadata.get("allow_missing_partitions", False))
        loaded: dict[str, Any] = {}
        for partition_key in partition_keys:
            key = self.storage_key(context.asset_key, partition_key)
            try:
                loaded[str(partition_key)] = self._read(context, key, value_type)
            except FileNotFoundError:
                if not allow_missing:
                    raise
                context.log.debug(f"skipping missing partition {partition_key} of {context.asset_key}")
        return loaded

    @staticmethod
    def _annotation(context: dg.InputContext) -> Any:
        # The input's own annotation wins; an unannotated input falls back to what the upstream
        # asset declared it returns, so loading does not depend on how the consumer was written.
        typing_type = getattr(context.dagster_type, "typing_type", None)
        if typing_type in (None, Any, object) and context.upstream_output is not None:
            # Only known when the upstream asset is part of the loaded definitions' job.
            with contextlib.suppress(dg.DagsterInvariantViolationError):
                typing_type = getattr(context.upstream_output.dagster_type, "typing_type", None)
        return Any if typing_type in (None, object) else typing_type


def _is_mapping_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _mapping_value_type(annotation: Any) -> Any:
    if _is_mapping_type(annotation):
        args = typing.get_args(annotation)
        return args[1] if len(args) == 2 else Any
    return Any


@contextlib.contextmanager
def _temp_file(suffix: str) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="autoedit-io-", suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


class PolarsParquetIOManager(_StoreIOManager):
    """polars DataFrames (or LazyFrames, collected) as parquet files in the MediaStore."""

    extension: ClassVar[str] = "parquet"
    compression: str = Field(
        default="zstd", description="Parquet compression codec (zstd, snappy, lz4, gzip, uncompressed)."
    )

    def _write(self, context: dg.OutputContext, key: str, obj: Any) -> dict[str, Any]:
        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        if not isinstance(obj, pl.DataFrame):
            raise dg.DagsterInvariantViolationError(
                f"PolarsParquetIOManager stores polars DataFrames, got {type(obj).__name__} for {key}"
            )
        # Through a temp file, not bytes in memory: the store publishes it atomically (multipart on S3).
        with _temp_file(".parquet") as path:
            obj.write_parquet(path, compression=self.compression)
            self.store.put_file(path, key)
        return {
            "dagster/row_count": obj.height,
            "columns": dg.MetadataValue.json({name: str(dtype) for name, dtype in obj.schema.items()}),
        }

    def _read(self, context: dg.InputContext, key: str, annotation: Any) -> Any:
        if not self.store.exists(key):
            raise FileNotFoundError(f"{self.store.uri(key)} not found: materialize {context.asset_key} first")
        with self.store.local_copy(key) as path:
            frame = pl.read_parquet(path)
        return frame.lazy() if annotation is pl.LazyFrame else frame


def _model_path(obj: Any) -> str | None:
    """Import path of the pydantic model in `obj` (or in its first list/dict item), for the UI."""
    if isinstance(obj, Mapping):
        obj = next(iter(obj.values()), None)
    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        obj = obj[0] if obj else None
    if isinstance(obj, pydantic.BaseModel):
        cls = type(obj)
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


class PydanticJsonIOManager(_StoreIOManager):
    """Small values (pydantic models, or lists/dicts of them) as JSON files in the MediaStore.

    The JSON is the plain model dump, readable by any client. Loading validates it against the
    input's annotation (else the upstream asset's return annotation), e.g. ``EditTimeline`` or
    ``list[Segment]``; with neither, the parsed JSON (dicts and lists) is returned.
    """

    extension: ClassVar[str] = "json"

    def _write(self, context: dg.OutputContext, key: str, obj: Any) -> dict[str, Any]:
        # pydantic_core serializes models with their own serializers, and lists/dicts of them.
        self.store.write_bytes(key, pydantic_core.to_json(obj, indent=2))
        model = _model_path(obj)
        return {"model": model} if model else {}

    def _read(self, context: dg.InputContext, key: str, annotation: Any) -> Any:
        return self._decode(self.store.read_bytes(key), annotation)

    def load_partition(self, asset_key: dg.AssetKey, partition_key: str, annotation: Any) -> Any:
        """One partition's stored value outside an input (the render checks read their run's video so)."""
        return self._decode(self.store.read_bytes(self.storage_key(asset_key, partition_key)), annotation)

    @staticmethod
    def _decode(data: bytes, annotation: Any) -> Any:
        if annotation is Any:
            return json.loads(data)
        return pydantic.TypeAdapter(annotation).validate_json(data)
