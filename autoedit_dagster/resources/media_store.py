"""MediaStore: one storage API for uploads, intermediates and renders, on a local folder or S3.

Keys are relative, `/`-separated and identical on both backends (the layout is named in
`autoedit_dagster/names.py`). Writes are atomic: a reader never
sees a half-written object at a final key (local: temp file + ``os.replace``; S3: an object
only becomes visible once its single PUT or multipart upload completes).

Environment read (only by :func:`media_store_from_env`, the one place that chooses the store,
and by boto3's own configuration chain):

- ``AUTOEDIT_STORAGE``: a folder path, or ``s3://bucket/prefix``. Default: ``.storage/`` in
  the repository root (git-ignored).
- ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``: an S3-compatible endpoint (MinIO, moto). Passed
  explicitly by :func:`media_store_from_env`; boto3 also honours them when ``endpoint_url`` is unset.
- ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
  ``AWS_REGION`` / ``AWS_DEFAULT_REGION``: boto3's standard credential and region chain.
"""

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal
from urllib.parse import unquote, urlparse

import dagster as dg
from pydantic import Field, PrivateAttr

from autoedit_dagster.names import IDS_PREFIX, RENDERS_PREFIX, STAGING_PREFIX, UPLOADS_PREFIX

# Producers own uploads/: the pipeline only reads it and only ever adds renders. An id claim is
# what keeps a second upload off a video's renders: deleting one would reopen the id.
PROTECTED_PREFIXES = (UPLOADS_PREFIX, RENDERS_PREFIX, IDS_PREFIX)

# Our own in-flight temp files start with this (hidden, so the upload sensor ignores them too).
TMP_PREFIX = ".autoedit-tmp-"
# The engine renders to a hidden `.<name>.<id>.part` beside the output before renaming it.
PART_SUFFIX = ".part"

_MB = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """One object in the store, as listed or stat'ed."""

    key: str
    size: int
    # S3: the object's ETag (unquoted). Local: size and mtime in ns, which changes with content.
    etag: str
    # Epoch seconds. Local: the later of mtime and ctime, so a file moved (or `cp -p`'d) into
    # uploads/ with an old mtime still looks new; S3: LastModified.
    mtime: float


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError (no `..`, no absolute paths)."""
    if not isinstance(key, str) or not key:
        raise ValueError("empty storage key")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"unsafe storage key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


def check_object_key(key: str) -> str:
    """`check_key` for reading S3, where a key is an opaque name: empty segments (`uploads//x.mp4`,
    which S3 tools and producers' scripts write) are allowed; `.`/`..` segments and absolute keys
    are not. What the pipeline writes always passes `check_key`.
    """
    if isinstance(key, str) and key and not key.startswith("/") and "//" in key:
        check_key("/".join(part for part in key.split("/") if part))
        return key
    return check_key(key)


def _check_prefix(prefix: str) -> str:
    # A listing prefix may be empty or end with "/" (a folder); its other parts must be safe.
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_deletable_key(key: str) -> str:
    """Refuse single keys under a protected prefix (and unsafe keys)."""
    if check_key(key).startswith(PROTECTED_PREFIXES):
        raise PermissionError(f"refusing to delete {key!r}: {', '.join(PROTECTED_PREFIXES)} are never deleted")
    return key


def is_temp_name(name: str) -> bool:
    """A temporary file of ours: a store write in progress, or an engine render's partial output."""
    return name.startswith(TMP_PREFIX) or (name.startswith(".") and name.endswith(PART_SUFFIX))


def check_deletable_prefix(prefix: str) -> str:
    """Refuse prefixes that are, contain or sit inside a protected prefix (and non-folder prefixes)."""
    if not prefix.endswith("/"):
        # "work/abc" would also match "work/abcdef/": only whole folders are deleted.
        raise ValueError(f"delete_prefix needs a folder prefix ending in '/': {prefix!r}")
    _check_prefix(prefix)
    for protected in PROTECTED_PREFIXES:
        if prefix.startswith(protected) or protected.startswith(prefix):
            raise PermissionError(f"refusing to delete {prefix!r}: {protected} is never deleted")
    return prefix


def check_promotion(staged_prefix: str, final_prefix: str) -> None:
    """Only folders under staging/ are promoted, and never into uploads/, ids/ or staging/."""
    for prefix in (staged_prefix, final_prefix):
        if not prefix.endswith("/"):
            raise ValueError(f"promote needs folder prefixes ending in '/': {prefix!r}")
        _check_prefix(prefix)
    if not staged_prefix.startswith(STAGING_PREFIX):
        raise ValueError(f"only {STAGING_PREFIX} is promoted, not {staged_prefix!r}")
    if final_prefix.startswith((UPLOADS_PREFIX, IDS_PREFIX, STAGING_PREFIX)):
        raise PermissionError(f"refusing to promote into {final_prefix!r}")


def promotion_order(staged: Collection[str], names: Collection[str] | None, last: str | None) -> list[str]:
    """The staged names to publish (`names`, default all), `last` after every other one."""
    chosen = sorted(name for name in staged if names is None or name in names)
    return [name for name in chosen if name != last] + [name for name in chosen if name == last]


class MediaStore(dg.ConfigurableResource):
    """Where uploads, intermediates and renders live: a local folder or an S3 bucket."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """A URI for humans and logs: `file:///...` locally, `s3://bucket/...` on S3."""

    def shared_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL someone outside may fetch `key` from: presigned on S3, the `file:` URI locally."""
        return self.uri(key)

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> StoredObject:
        """Size, etag and mtime of `key`; FileNotFoundError when absent."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when absent. For media use `local_copy`."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or replace `key`."""

    @abstractmethod
    def create_bytes(self, key: str, data: bytes) -> bool:
        """Atomically create `key` unless it exists: True if written, False (nothing changed) if not.

        Of two concurrent callers exactly one wins, on both backends.
        """

    @abstractmethod
    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        """Atomically publish a local file at `key` (S3: multipart above the threshold)."""

    @abstractmethod
    def put_stream(self, key: str, chunks: Iterable[bytes], *, replace: bool = True) -> StoredObject | None:
        """Publish the bytes `chunks` yields at `key`, whole or not at all, holding at most about one
        part in memory (local: a hidden temp file, then a rename; S3: a multipart upload of
        `stream_part_mb` parts, published by its completion).

        An exception from `chunks` (a size limit, a client gone) publishes nothing and leaves
        nothing behind. Without `replace`, an existing `key` is kept and None returned (of two
        concurrent callers exactly one publishes). Returns the published object.
        """

    @abstractmethod
    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        """Copy `key` to `local_path` (atomically on the local side) and return the path."""

    @abstractmethod
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A local path to read `key` from: the real file locally, a temp download on S3.

        Treat it as read-only: locally it is the stored file itself.
        """

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder `prefix`; returns the count. Refuses `PROTECTED_PREFIXES`."""

    @abstractmethod
    def promote(
        self, staged_prefix: str, final_prefix: str, names: Collection[str] | None = None, last: str | None = None
    ) -> list[str]:
        """Publish the files staged under `staged_prefix` at the same names under `final_prefix`.

        `names` (default: all staged) go together; `last` is published after its companions.
        Published files that are not promoted stay. The promoted files leave staging. Local: one
        atomic directory exchange (a reader sees the whole old set or the whole new one). S3:
        server-side copies, `last` after the rest; repeating it after a crash completes it.
        Returns the published keys.
        """

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Delete the object `key`; True if it existed. Refuses keys under `PROTECTED_PREFIXES`."""

    def sweep_temp_files(self, older_than_seconds: float, now: float) -> list[str]:
        """Delete our own temporary files last modified over `older_than_seconds` ago; their keys.

        The base store has none: an S3 object appears whole (an unfinished multipart upload is
        invisible, and aborted by the bucket's lifecycle rule, deploy/s3-lifecycle.json).
        """
        return []

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Objects whose key starts with `prefix`, streamed page by page (order not guaranteed)."""

    @abstractmethod
    def key_from_uri(self, uri_or_key: str) -> str:
        """The key for one of this store's URIs (a bare key is returned unchanged)."""


# ----------------------------------------------------------------------------------------- local


class LocalMediaStore(MediaStore):
    """Media and tables under a local folder (the embedded default)."""

    root: str = Field(description="Folder holding uploads/, work/, renders/, quarantine/ and catalog/.")

    def _root(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        root = self._root()
        path = root.joinpath(*check_key(key).split("/"))
        # A symbolic link is never followed out of the root, nor anywhere under uploads/: a
        # producer's link to /etc/... would otherwise be read, rendered and published.
        real = path.resolve()
        if real != path and (key.startswith(UPLOADS_PREFIX) or not real.is_relative_to(root)):
            raise ValueError(f"refused {key!r}: it goes through a symbolic link ({real})")
        return path

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_from_uri(self, uri_or_key: str) -> str:
        if uri_or_key.startswith("file://"):
            path = Path(unquote(urlparse(uri_or_key).path))
            return path.relative_to(self._root()).as_posix()
        return check_key(uri_or_key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _stored(self, key: str, st: os.stat_result) -> StoredObject:
        return StoredObject(
            key=key,
            size=st.st_size,
            etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
            mtime=max(st.st_mtime, st.st_ctime),
        )

    def stat(self, key: str) -> StoredObject:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no such object: {self.uri(key)}")
        return self._stored(key, path.stat())

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _atomic_write(self, path: Path, write: Callable[[IO[bytes]], None], *, exclusive: bool = False) -> bool:
        # The temp file sits beside the target so os.replace is a same-filesystem rename.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            # mkstemp creates 0600; published files must stay readable by the webserver/other users.
            os.chmod(tmp, 0o644)
            if not exclusive:
                os.replace(tmp, path)
                return True
            # link() fails if the name exists: create-if-absent, and never a half-written file.
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(self._path(key), lambda handle: handle.write(data))

    def create_bytes(self, key: str, data: bytes) -> bool:
        return self._atomic_write(self._path(key), lambda handle: handle.write(data), exclusive=True)

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        def copy(handle: IO[bytes]) -> None:
            with open(local_path, "rb") as source:
                shutil.copyfileobj(source, handle, length=8 * _MB)

        self._atomic_write(self._path(key), copy)

    def put_stream(self, key: str, chunks: Iterable[bytes], *, replace: bool = True) -> StoredObject | None:
        def copy(handle: IO[bytes]) -> None:
            for chunk in chunks:
                handle.write(chunk)

        if not self._atomic_write(self._path(key), copy, exclusive=not replace):
            return None
        return self.stat(key)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise FileNotFoundError(f"no such object: {self.uri(key)}")
        target = Path(local_path)

        def copy(handle: IO[bytes]) -> None:
            with source.open("rb") as reader:
                shutil.copyfileobj(reader, handle, length=8 * _MB)

        self._atomic_write(target, copy)
        return target

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(self.key_from_uri(key))
        if not path.is_file():
            raise FileNotFoundError(f"no such object: {path}")
        yield path

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(check_deletable_prefix(prefix).rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(1 for item in folder.rglob("*") if item.is_file())
        shutil.rmtree(folder)
        return count

    def delete(self, key: str) -> bool:
        try:
            self._path(check_deletable_key(key)).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep_temp_files(self, older_than_seconds: float, now: float) -> list[str]:
        root = self._root()
        removed: list[str] = []
        uploads = root / UPLOADS_PREFIX.rstrip("/")
        for dirpath, _dirnames, filenames in os.walk(root):
            # uploads/ belongs to producers: their own `.x.part` files are not ours to delete, only
            # what a write of ours (`submit`, the gateway's `POST /uploads`) left there.
            in_uploads = Path(dirpath) == uploads or uploads in Path(dirpath).parents
            for name in filenames:
                path = Path(dirpath, name)
                ours = name.startswith(TMP_PREFIX) if in_uploads else is_temp_name(name)
                with contextlib.suppress(FileNotFoundError):
                    if ours and now - path.lstat().st_mtime > older_than_seconds:
                        path.unlink()
                        removed.append(path.relative_to(root).as_posix())
        return removed

    def promote(
        self, staged_prefix: str, final_prefix: str, names: Collection[str] | None = None, last: str | None = None
    ) -> list[str]:
        check_promotion(staged_prefix, final_prefix)
        staged_dir, final_dir = self._path(staged_prefix[:-1]), self._path(final_prefix[:-1])
        staged = [p.name for p in staged_dir.iterdir() if p.is_file()] if staged_dir.is_dir() else []
        order = promotion_order(staged, names, last)
        if not order:
            return []
        # The new set, whole, beside the staged files (same filesystem): the promoted files, plus
        # every published file they do not replace. Hard links: no bytes are copied.
        new_set = Path(tempfile.mkdtemp(dir=staged_dir.parent, prefix=TMP_PREFIX))
        try:
            kept = [p for p in final_dir.iterdir() if p.is_file() and p.name not in order] if final_dir.is_dir() else []
            for source in [*(staged_dir / name for name in order), *kept]:
                os.link(source, new_set / source.name)
            os.chmod(new_set, 0o755)
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            if not _swap_in(new_set, final_dir):
                # No atomic exchange on this system: file by file, `last` after its companions.
                for name in order:
                    os.replace(new_set / name, final_dir / name)
        finally:
            shutil.rmtree(new_set, ignore_errors=True)  # after a swap: the old set
        for name in order:
            (staged_dir / name).unlink()
        _remove_empty_folders(staged_dir, stop=self._root() / STAGING_PREFIX.rstrip("/"))
        return [final_prefix + name for name in order]

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        _check_prefix(prefix)
        root = self._root()
        # Walk only the deepest folder the prefix names; the rest of the prefix filters names.
        start = root.joinpath(*prefix.rpartition("/")[0].split("/")) if "/" in prefix else root
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(TMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = path.lstat()  # a symbolic link is listed as itself, never followed
                except FileNotFoundError:  # removed between walk and stat
                    continue
                yield self._stored(key, st)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _swap_in(new: Path, target: Path) -> bool:
    """Put folder `new` at `target` in one step, the old `target` (if any) left at `new`.

    False if this system cannot exchange two folders atomically (no renameat2, or a filesystem
    without RENAME_EXCHANGE); the caller then falls back to file-by-file replacement.
    """
    try:
        os.rename(new, target)  # atomic when `target` does not exist (or is an empty folder)
        return True
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    exchange = _renameat2()
    if exchange is None:
        return False
    if exchange(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(new), None, os.fspath(target))


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (another profile's staging), or already gone
            return
        folder = folder.parent


# -------------------------------------------------------------------------------------------- S3


@functools.cache
def _shared_data_loader() -> Any:
    import botocore.session

    return botocore.session.get_session().get_component("data_loader")


def _boto3_session() -> Any:
    """A fresh boto3 session (credentials resolved anew) sharing one parsed-model cache.

    Resources are rebuilt for every sensor tick and run; re-reading botocore's service JSON
    each time costs ~0.3 s, sharing the loader ~0.03 s.
    """
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_data_loader())
    return boto3.session.Session(botocore_session=core)


def _is_missing(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound")


class S3MediaStore(MediaStore):
    """Media and tables under s3://bucket/prefix (any S3-compatible endpoint)."""

    bucket: str = Field(description="Bucket holding uploads/, work/ and renders/.")
    prefix: str = Field(default="", description="Key prefix inside the bucket.")
    endpoint_url: str | None = Field(
        default=None,
        description="Set for MinIO or other S3-compatible stores; unset, boto3 honours AWS_ENDPOINT_URL.",
    )
    region_name: str | None = Field(default=None, description="Region; unset, boto3's chain decides.")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="'auto' uses path-style URLs whenever a non-AWS endpoint is in use (MinIO needs it).",
    )
    max_attempts: int = Field(
        default=6, description="Attempts per S3 call, first included (standard mode: backoff + jitter)."
    )
    multipart_threshold_mb: int = Field(default=64, description="Uploads at least this big go multipart.")
    multipart_chunksize_mb: int = Field(default=16, description="Part size of multipart uploads (>= 5).")
    max_concurrency: int = Field(default=4, description="Parallel part transfers per file.")
    stream_part_mb: int = Field(
        default=8, description="Part size (>= 5) of `put_stream`'s multipart uploads: about what one holds in memory."
    )
    page_size: int = Field(default=1000, description="Keys per ListObjectsV2 page.")

    _client: Any = PrivateAttr(default=None)

    def _s3(self) -> Any:
        # Built lazily and cached: boto3 clients are thread-safe, and building one costs ~50 ms.
        if self._client is None:
            from botocore.config import Config

            def build(style: str) -> Any:
                config = Config(
                    retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                    connect_timeout=10,
                    read_timeout=60,
                    s3={"addressing_style": style},
                )
                return _boto3_session().client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=config
                )

            client = build("auto" if self.addressing_style == "auto" else self.addressing_style)
            # An endpoint from AWS_ENDPOINT_URL or ~/.aws/config is only known after boto3 resolved
            # it; S3-compatible servers addressed by host name need path-style URLs.
            if self.addressing_style == "auto" and "amazonaws.com" not in client.meta.endpoint_url:
                client = build("path")
            self._client = client
        return self._client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold_mb * _MB,
            multipart_chunksize=max(5, self.multipart_chunksize_mb) * _MB,
            max_concurrency=self.max_concurrency,
        )

    def _full(self, key: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(check_object_key(key))}"

    def shared_url(self, key: str, expires_s: int = 3600) -> str:
        params = {"Bucket": self.bucket, "Key": self._full(check_object_key(key))}
        return str(self._s3().generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))

    def key_from_uri(self, uri_or_key: str) -> str:
        if uri_or_key.startswith("s3://"):
            base = f"s3://{self.bucket}/{self._full('')}"
            if not uri_or_key.startswith(base):
                raise ValueError(f"{uri_or_key} is outside {base}")
            return check_object_key(uri_or_key[len(base) :])
        return check_object_key(uri_or_key)

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self._s3().head_object(Bucket=self.bucket, Key=self._full(check_object_key(key)))
        except ClientError as error:
            if _is_missing(error):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def stat(self, key: str) -> StoredObject:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"no such object: {self.uri(key)}")
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            etag=head["ETag"].strip('"'),
            mtime=head["LastModified"].timestamp(),
        )

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self._s3().get_object(Bucket=self.bucket, Key=self._full(check_object_key(key)))
        except ClientError as error:
            if _is_missing(error):
                raise FileNotFoundError(f"no such object: {self.uri(key)}") from error
            raise
        return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic: the key shows the old object until the new one is complete.
        self._s3().put_object(Bucket=self.bucket, Key=self._full(check_key(key)), Body=data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            # A conditional PUT (AWS, MinIO, moto): 412 when the key exists, 409 when another
            # conditional write to it is in flight. Either way someone else got there first.
            self._s3().put_object(Bucket=self.bucket, Key=self._full(check_key(key)), Body=data, IfNoneMatch="*")
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):
                return False
            raise
        return True

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        # The transfer manager goes multipart above the threshold; the object is published only by
        # CompleteMultipartUpload, and a failed upload is aborted, so no partial object appears.
        self._s3().upload_file(
            os.fspath(local_path), self.bucket, self._full(check_key(key)), Config=self._transfer_config()
        )

    def put_stream(self, key: str, chunks: Iterable[bytes], *, replace: bool = True) -> StoredObject | None:
        from botocore.exceptions import ClientError

        client, full = self._s3(), self._full(check_key(key))
        condition = {} if replace else {"IfNoneMatch": "*"}  # conditional publish: 412/409 if it exists
        part_size = max(5, self.stream_part_mb) * _MB
        buffer, filled = bytearray(part_size), 0  # one part, reused: memory stays at one part
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        def send_part(body: bytes | bytearray) -> None:
            assert upload_id is not None
            number = len(parts) + 1
            reply = client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body)
            parts.append({"ETag": reply["ETag"], "PartNumber": number})

        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    taken = min(len(view), part_size - filled)
                    buffer[filled : filled + taken] = view[:taken]
                    filled, view = filled + taken, view[taken:]
                    if filled == part_size:
                        if upload_id is None:
                            upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
                        send_part(buffer)
                        filled = 0
            if upload_id is None:  # smaller than one part: a single PUT, atomic as well
                client.put_object(Bucket=self.bucket, Key=full, Body=bytes(buffer[:filled]), **condition)
            else:
                if filled:
                    send_part(bytes(buffer[:filled]))
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}, **condition
                )
                upload_id = None
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if not replace and status in (409, 412):
                return None
            raise
        finally:
            if upload_id is not None:  # failed or refused: the parts go, nothing was published
                with contextlib.suppress(Exception):
                    client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        return self.stat(key)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        from botocore.exceptions import ClientError

        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX, suffix=".tmp")
        os.close(fd)
        try:
            full = self._full(check_object_key(key))
            self._s3().download_file(self.bucket, full, tmp, Config=self._transfer_config())
            os.replace(tmp, target)
        except ClientError as error:
            if _is_missing(error):
                raise FileNotFoundError(f"no such object: {self.uri(key)}") from error
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        key = self.key_from_uri(key)
        with tempfile.TemporaryDirectory(prefix="autoedit-") as folder:
            # Keep the file name: ffmpeg and friends look at the extension.
            yield self.get_file(key, Path(folder) / PurePosixPath(key).name)

    def delete_prefix(self, prefix: str) -> int:
        check_deletable_prefix(prefix)
        client = self._s3()
        count = 0
        batch: list[dict[str, str]] = []
        for item in self.list(prefix):
            batch.append({"Key": self._full(item.key)})
            if len(batch) == 1000:  # DeleteObjects takes at most 1000 keys
                client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                count += len(batch)
                batch = []
        if batch:
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            count += len(batch)
        return count

    def delete(self, key: str) -> bool:
        existed = self._head(check_deletable_key(key)) is not None
        self._s3().delete_object(Bucket=self.bucket, Key=self._full(key))
        return existed

    def promote(
        self, staged_prefix: str, final_prefix: str, names: Collection[str] | None = None, last: str | None = None
    ) -> list[str]:
        check_promotion(staged_prefix, final_prefix)
        staged = [obj.key[len(staged_prefix) :] for obj in self.list(staged_prefix)]
        order = promotion_order(staged, names, last)
        client = self._s3()
        for name in order:
            # Server-side (multipart for big objects): the bytes checked are the bytes published.
            client.copy(
                {"Bucket": self.bucket, "Key": self._full(staged_prefix + name)},
                self.bucket,
                self._full(final_prefix + name),
                Config=self._transfer_config(),
            )
        # Only once all are published: a crash before this leaves staging whole for a repeat.
        for start in range(0, len(order), 1000):
            batch = [{"Key": self._full(staged_prefix + name)} for name in order[start : start + 1000]]
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return [final_prefix + name for name in order]

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        _check_prefix(prefix)
        strip = len(self._full(""))
        paginator = self._s3().get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self._full(prefix), PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            for item in page.get("Contents", ()):
                yield StoredObject(
                    key=item["Key"][strip:],
                    size=int(item["Size"]),
                    etag=item["ETag"].strip('"'),
                    mtime=item["LastModified"].timestamp(),
                )


# ------------------------------------------------------------------------------------- selection


def default_storage_root() -> Path:
    """`.storage/` in the repository root (git-ignored); in the working directory when installed."""
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / ".storage"


def media_store_from_env(value: str | None = None) -> MediaStore:
    """The store named by `value` (else `AUTOEDIT_STORAGE`): a folder path or `s3://bucket/prefix`."""
    value = value if value is not None else os.environ.get("AUTOEDIT_STORAGE", "")
    value = value.strip()
    if not value:
        return LocalMediaStore(root=str(default_storage_root()))
    if value.startswith("s3://"):
        parsed = urlparse(value)
        if not parsed.netloc:
            raise ValueError(f"AUTOEDIT_STORAGE={value!r}: expected s3://bucket[/prefix]")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        return S3MediaStore(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint_url=endpoint)
    if value.startswith("file://"):
        value = unquote(urlparse(value).path)
    return LocalMediaStore(root=str(Path(value).expanduser().resolve()))
