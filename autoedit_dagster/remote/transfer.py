"""How `autoedit submit` and `autoedit fetch` move media: through the store, or through the gateway.

`StoreTransfer`: the store AUTOEDIT_STORAGE names (a folder or s3://bucket/prefix, with
AWS_ENDPOINT_URL and the AWS_* credentials), which must be the server's own storage.

`GatewayTransfer` (`--gateway URL`, else AUTOEDIT_GATEWAY_URL): the gateway's `POST /uploads`
and `GET /media/<video_id>/<profile>/<file>` with the bearer token (`--token` / AUTOEDIT_TOKEN),
so no storage credentials are needed. The file is streamed in 1 MB reads with its length
declared; a download is written to a hidden temp file beside the target and renamed once whole
(its length checked), and a redirect to a presigned S3 URL is followed without the token.

Reads AUTOEDIT_GATEWAY_URL (and, through `media_store_from_env`, AUTOEDIT_STORAGE) only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

import httpx

from autoedit_dagster.names import UPLOADS_PREFIX, is_video_upload

from .errors import RemoteError, Unreachable, UsageError, http_detail, http_status_error, one_line
from .records import Endpoint

GATEWAY_ENV = "AUTOEDIT_GATEWAY_URL"
READ_SIZE = 1024 * 1024
TMP_PREFIX = ".autoedit-tmp-"


@dataclass(frozen=True)
class Uploaded:
    video_id: str
    key: str
    uri: str
    etag: str  # what the upload sensor's run is tagged with


class Transfer(Protocol):
    def upload(self, source: Path, name: str, replace: bool) -> Uploaded: ...

    def download(self, video_id: str, profile: str, uri: str, target: Path) -> None: ...


def gateway_url(args: Any) -> str | None:
    """`--gateway`, else AUTOEDIT_GATEWAY_URL; None: media goes through the store."""
    return getattr(args, "gateway", None) or os.environ.get(GATEWAY_ENV) or None


def upload_key(name: str) -> str:
    """`uploads/<name>` if the upload sensor takes that name, else a UsageError."""
    key = f"{UPLOADS_PREFIX}{name}"
    if not is_video_upload(key):
        raise UsageError(f"{key}: not a name the upload sensor accepts (a video extension, no hidden or partial name)")
    return key


def open_transfer(args: Any, token: str | None, timeout: float) -> Transfer:
    url = gateway_url(args)
    return StoreTransfer() if url is None else GatewayTransfer(url, token, timeout)


@contextlib.contextmanager
def _storage(action: str) -> Iterator[None]:
    """Storage failures (local or S3) as one RemoteError line."""
    try:
        yield
    except RemoteError:
        raise
    except FileNotFoundError as exc:
        raise RemoteError(f"{action}: {exc}") from None
    except Exception as exc:  # botocore's ClientError/EndpointConnectionError, OSError, ...
        raise RemoteError(f"{action}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None


class StoreTransfer:
    """Media through the store AUTOEDIT_STORAGE names (loads Dagster: the store is a resource)."""

    def __init__(self) -> None:
        from autoedit_dagster.resources import media_store_from_env

        try:
            self.store = media_store_from_env()
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def upload(self, source: Path, name: str, replace: bool) -> Uploaded:
        from autoedit_dagster.partitions import video_id_for_upload
        from autoedit_dagster.resources.media_store import check_key

        key = upload_key(name)
        try:
            video_id = video_id_for_upload(check_key(key))
        except ValueError as exc:
            raise UsageError(f"--name: {exc}") from None
        with _storage(f"cannot upload to {key}"):
            if self.store.exists(key) and not replace:
                raise UsageError(
                    f"{self.store.uri(key)} already exists (video {video_id}); "
                    f"see `autoedit status {video_id}`, or pass --replace to upload it again"
                )
            self.store.put_file(source, key)
            etag = self.store.stat(key).etag
        return Uploaded(video_id, key, self.store.uri(key), etag)

    def download(self, video_id: str, profile: str, uri: str, target: Path) -> None:
        with _storage(f"cannot download {uri}"):
            try:
                key = self.store.key_from_uri(uri)
            except ValueError:
                raise RemoteError(
                    f"{uri} is not in the storage AUTOEDIT_STORAGE names here ({self.store.uri('renders')}); "
                    "set AUTOEDIT_STORAGE to the server's storage, or move media through the gateway (--gateway)"
                ) from None
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(key, target)


class GatewayTransfer:
    """Media through the gateway's `/uploads` and `/media/...` with a bearer token: no storage credentials."""

    def __init__(self, url: str, token: str | None, timeout: float, transport: httpx.BaseTransport | None = None):
        self.url = Endpoint.parse(url).base_url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout, self.transport = timeout, transport

    def _client(self, token: bool = True) -> httpx.Client:
        # Without the token for presigned URLs: they carry their own signature, and the gateway's
        # token must never travel to the store.
        headers = self.headers if token else {}
        return httpx.Client(headers=headers, timeout=self.timeout, transport=self.transport, trust_env=False)

    def _error(self, response: httpx.Response, what: str) -> RemoteError:
        code, detail = response.status_code, http_detail(response)
        if code in (400, 409, 413, 415):
            return UsageError(f"{what}: {self.url} refused it ({code}): {detail}")
        if code == 404:
            return UsageError(f"{what}: {self.url} answered 404: {detail}; is --gateway the AutoEditTATE gateway?")
        return http_status_error(code, self.url, detail, response.headers.get("Retry-After"))

    def upload(self, source: Path, name: str, replace: bool) -> Uploaded:
        upload_key(name)  # the gateway checks it again, and refuses a name that is a path
        size = source.stat().st_size

        def body() -> Iterator[bytes]:
            with source.open("rb") as handle:
                while chunk := handle.read(READ_SIZE):
                    yield chunk

        params = {"name": name, **({"replace": "1"} if replace else {})}
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            with self._client() as http:
                response = http.post(f"{self.url}/uploads", params=params, content=body(), headers=headers)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer in time during the upload") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"upload to {self.url} failed: {one_line(exc) or type(exc).__name__}") from None
        if response.status_code == 409:
            hint = "" if replace else "; pass --replace to upload it again"  # with it: the video is being processed
            raise UsageError(f"{http_detail(response)} (on {self.url}){hint}")
        if response.status_code != 201:
            raise self._error(response, f"cannot upload {source.name}")
        body_json = response.json()
        return Uploaded(body_json["video_id"], body_json["key"], body_json["uri"], body_json["etag"])

    def download(self, video_id: str, profile: str, uri: str, target: Path) -> None:
        name = PurePosixPath(urlsplit(uri).path).name
        url = f"{self.url}/media/{quote(video_id, safe='')}/{quote(profile, safe='')}/{quote(name, safe='')}"
        what = f"cannot download {name} of {video_id}"
        try:
            with self._client() as http, http.stream("GET", url) as response:
                if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                    location = urljoin(url, response.headers["location"])
                    with self._client(token=False) as plain, plain.stream("GET", location) as redirected:
                        if redirected.status_code != 200:
                            redirected.read()
                            raise RemoteError(f"{what}: the presigned URL answered HTTP {redirected.status_code}")
                        _save(redirected, target)
                    return
                if response.status_code != 200:
                    response.read()
                    raise self._error(response, what)
                _save(response, target)
        except httpx.TimeoutException:
            raise Unreachable(f"{what}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"{what}: {one_line(exc) or type(exc).__name__}") from None


def _save(response: httpx.Response, target: Path) -> None:
    """The body to `target`, whole or not at all (a temp file beside it, renamed once its length checked)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX, suffix=".tmp")
    try:
        written = 0
        with os.fdopen(fd, "wb") as handle:
            for chunk in response.iter_bytes(READ_SIZE):
                handle.write(chunk)
                written += len(chunk)
        expected = response.headers.get("content-length")
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        if expected is not None and expected.isdigit() and not encoded and int(expected) != written:
            raise RemoteError(f"download of {target.name} cut short: {written} of {expected} bytes")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
