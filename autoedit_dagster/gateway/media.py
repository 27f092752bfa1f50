"""Media through the gateway: `POST /uploads` into `uploads/`, `GET /media/<video_id>/<profile>/<file>`.

A client with only the gateway's URL and a token moves media: no storage credentials.

`POST /uploads?name=<file name>[&replace=1]` (operators; viewers get 403): the body is the file
itself (`application/octet-stream` or `video/*`; a form or multipart body is refused with 415),
streamed to the store as it arrives (`MediaStore.put_stream`: a hidden temp file then a rename, or
an S3 multipart upload published by its completion), so the gateway holds about one part in memory
and the upload sensor never sees half a file. The name is one file name with a video extension
(`names.VIDEO_EXTENSIONS`), never a path, hidden or partial name: else 400. More than
AUTOEDIT_MAX_UPLOAD_MB: 413 (at once when Content-Length says so, else when the stream passes it;
nothing is kept). On a local store a declared length that would leave less than `DISK_RESERVE_BYTES`
free is 507 at once, as is a full disk during the upload. There is no per-user or total quota: an
operator may fill the store at the rate limit times the upload limit. At most
`MAX_CONCURRENT_UPLOADS` at once (`MAX_UPLOADS_PER_CLIENT` per token subject), each in a thread of
its own (more: 503 with Retry-After, counted before the first await so a burst gets no more); a
client that sends less than `UPLOAD_MIN_WINDOW_BYTES` in any `UPLOAD_IDLE_SECONDS` (silence or a
trickle) gets 408. An existing upload of that name: 409 unless `replace=1`, and 409 even then while
a run of its video is queued or running (the webserver's word; 502 if it cannot say). 201 answers
``{"video_id", "key", "uri", "etag", "size"}``: the id is the one the upload sensor gives the key
(`partitions.resolve_video_ids`: its 64-bit id, or the legacy id this very upload owns).

`GET|HEAD /media/<video_id>/<profile>/<file>` (any role): one of a published render's files
(`review.listing.RENDER_FILES`: `final.mp4`, `thumb.jpg`, `timeline.png`, `report.json` and the
editor exports). A local store serves it with HTTP range requests (206, Content-Range); on S3 the
answer is a 302 to a presigned URL valid `MEDIA_URL_LIFETIME_S` (fetch it without the gateway's
Authorization header). The report and editor exports are downloads (attachment, CSP sandbox), never
pages of the gateway's origin. The review page's media links are served by the same function.
"""

from __future__ import annotations

import errno
import functools
import logging
import shutil
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from ..names import (
    PROFILE_NAMES,
    RENDER_NAME,
    THUMBNAIL_NAME,
    TIMELINE_PNG_NAME,
    UPLOADS_PREFIX,
    VIDEO_EXTENSIONS,
    is_video_upload,
    render_prefix,
)
from ..partitions import is_video_id, legacy_video_id_for_upload, resolve_video_ids
from ..resources import LocalMediaStore, MediaStore
from ..resources.media_store import check_key
from ..review.listing import RENDER_FILES
from .metrics import GatewayMetrics
from .policy import Refusal
from .tokens import Principal

log = logging.getLogger("autoedit.gateway.media")

MEDIA_URL_LIFETIME_S = 900
MAX_CONCURRENT_UPLOADS = 8  # each holds a thread of its own, not one of the shared pool's
MAX_UPLOADS_PER_CLIENT = 4  # of those, at most this many for one token subject
UPLOAD_IDLE_SECONDS = 60.0  # a client that sends nothing this long is cut off (408) and nothing is kept
UPLOAD_MIN_WINDOW_BYTES = 64 * 1024  # ... or less than this in any such window (about 1 KiB/s: a trickle)
NAME_MAX_BYTES = 255  # one path segment on every filesystem we write to
DISK_RESERVE_BYTES = (
    1 << 30
)  # a local store keeps this free for work/ and renders/: an upload that would not fit is 507
UPLOAD_TYPES = ("application/octet-stream", "video/")
MEDIA_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"}
# Shown inline from the gateway's origin: the render, its thumbnail and timeline. The report and
# the editor exports (JSON, XML with text from the upload) are downloads, never a page of ours.
INLINE_FILES = frozenset({RENDER_NAME, THUMBNAIL_NAME, TIMELINE_PNG_NAME})
DOWNLOAD_CSP = "default-src 'none'; sandbox"


def free_bytes(store: LocalMediaStore) -> int:
    """Free space on the local store's filesystem (its root, or the nearest folder that exists)."""
    folder = Path(store.root).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


class TooLarge(Exception):
    """The body passed the upload limit."""


class EmptyUpload(Exception):
    """The body was empty."""


def upload_key(name: str | None) -> str:
    """`uploads/<name>` for an acceptable upload name, else a 400 `Refusal` saying what is wrong."""
    if not name:
        raise Refusal(400, "bad request", "name the upload: POST /uploads?name=<file name>.mp4")
    if "/" in name or "\\" in name:
        raise Refusal(400, "bad request", f"the name is a file name, not a path: {name!r}")
    if "\ufffd" in name:  # what the query's invalid UTF-8 decodes to: the name sent is not the name read
        raise Refusal(400, "bad request", "the name is not valid UTF-8")
    # C0/C1 controls, and invisible format characters (bidi overrides that show `gpj.mp4` reversed,
    # zero-width joiners): a name must read as what it is, in logs and on the review page.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise Refusal(400, "bad request", "the name has control or invisible formatting characters")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        raise Refusal(400, "bad request", f"the name is longer than {NAME_MAX_BYTES} bytes")
    key = UPLOADS_PREFIX + name
    try:
        check_key(key)
    except ValueError:
        raise Refusal(400, "bad request", f"not a file name: {name!r}") from None
    if not is_video_upload(key):
        raise Refusal(
            400, "bad request",
            f"{name!r} is not a video file name the pipeline takes (no hidden or partial name; one of "
            f"{' '.join(sorted(VIDEO_EXTENSIONS))})",
        )  # fmt: skip
    return key


def video_id_for(store: MediaStore, key: str) -> str:
    """The id the upload sensor gives `key`: its legacy id only if this very upload owns it."""
    return resolve_video_ids(store, [key], [legacy_video_id_for_upload(key)])[key]


async def published_render_key(store: MediaStore, video_id: str, profile: str, name: str) -> tuple[str, Path | None]:
    """The store key of one published render file and, on a local store, its path; or a `Refusal`
    (never a link, never staging)."""
    if not is_video_id(video_id):
        raise Refusal(404, "not found", "no such video")
    if profile not in PROFILE_NAMES:
        raise Refusal(400, "bad request", f"profile must be one of {list(PROFILE_NAMES)}")
    if name not in RENDER_FILES:
        raise Refusal(404, "not found", f"no such file: one of {', '.join(RENDER_FILES)}")
    key = render_prefix(video_id, profile) + name
    if not await run_in_threadpool(store.exists, key):
        raise Refusal(404, "not found", "not rendered (yet)")
    if isinstance(store, LocalMediaStore):
        with store.local_copy(key) as path:  # locally the stored file itself: safe after the block
            pass
        if path.resolve() != path:  # the store follows links inside its root; a published render is never one
            log.warning("a render file goes through a symbolic link: not served", extra={"key": key})
            raise Refusal(404, "not found", "not rendered (yet)")
        return key, path
    return key, None


async def serve_render_file(store: MediaStore, video_id: str, profile: str, name: str) -> Response:
    """One published render file: the file with range requests locally, a presigned redirect on S3."""
    key, path = await published_render_key(store, video_id, profile, name)
    if path is not None:
        headers = dict(MEDIA_HEADERS)
        if name not in INLINE_FILES:
            headers["Content-Disposition"] = f'attachment; filename="{video_id}-{profile}-{name}"'
            headers["Content-Security-Policy"] = DOWNLOAD_CSP
        return FileResponse(path, headers=headers)
    url = await run_in_threadpool(store.shared_url, key, MEDIA_URL_LIFETIME_S)
    return RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})


class MediaRoutes:
    """`/uploads` and `/media/...`, reached after the gateway authenticated and rate-limited the caller."""

    def __init__(self, store: MediaStore, max_upload_bytes: int, metrics: GatewayMetrics | None = None) -> None:
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics
        self.max_concurrent = MAX_CONCURRENT_UPLOADS
        self.idle_seconds = UPLOAD_IDLE_SECONDS
        self.min_window_bytes = UPLOAD_MIN_WINDOW_BYTES
        # Whether a video has a run queued or running (the gateway asks the webserver); None: never asked.
        self.in_flight: Callable[[str], Awaitable[bool]] | None = None
        self.max_per_client = MAX_UPLOADS_PER_CLIENT
        self._active = 0  # uploads past the slot check (only the event loop changes it)
        self._by_client: dict[str, int] = {}  # the same, per token subject
        self._slots: anyio.CapacityLimiter | None = None  # made on the event loop, at the first upload

    async def handle(self, request: Request, path: str, principal: Principal) -> Response:
        parts = [p for p in path.split("/") if p]
        if parts == ["uploads"]:
            if request.method != "POST":
                raise Refusal(405, "method not allowed", "upload with POST /uploads?name=...", {"Allow": "POST"})
            return await self._upload(request, principal)
        if request.method not in ("GET", "HEAD"):
            raise Refusal(405, "method not allowed", "media is read with GET", {"Allow": "GET, HEAD"})
        if len(parts) == 4 and parts[0] == "media":
            return await serve_render_file(self.store, parts[1], parts[2], parts[3])
        raise Refusal(404, "not found", "media paths are /media/<video_id>/<profile>/<file>")

    async def _upload(self, request: Request, principal: Principal) -> Response:
        if not principal.is_operator:
            raise Refusal(403, "forbidden", "viewer tokens may download media, not upload: POST /uploads needs an "
                          "operator token")  # fmt: skip
        if any(len(request.query_params.getlist(param)) > 1 for param in ("name", "replace")):
            # Which one counts differs between a proxy, a log reader and us: no guessing.
            raise Refusal(400, "bad request", "name and replace are given once each")
        key = upload_key(request.query_params.get("name"))
        replace = request.query_params.get("replace", "").lower() in ("1", "true", "yes")
        media_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        if not media_type.startswith(UPLOAD_TYPES):
            detail = "the body is the video file itself: Content-Type application/octet-stream or video/*"
            raise Refusal(415, "unsupported media type", detail)
        limit = self.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise Refusal(413, "payload too large", f"uploads are limited to {limit} bytes (AUTOEDIT_MAX_UPLOAD_MB)")
        if declared is not None and isinstance(self.store, LocalMediaStore):
            free = await run_in_threadpool(free_bytes, self.store)
            if int(declared) > free - DISK_RESERVE_BYTES:
                raise Refusal(507, "insufficient storage", f"the store has {free} bytes free and keeps "
                              f"{DISK_RESERVE_BYTES} for the pipeline: {declared} bytes do not fit")  # fmt: skip
        exists = await run_in_threadpool(self.store.exists, key)
        if exists and not replace:
            raise Refusal(409, "conflict", f"{key} already exists; POST with replace=1 to upload it again")
        if exists and self.in_flight is not None:
            # A run reading the old file would publish its renders, perhaps after the new file's.
            video_id = await run_in_threadpool(video_id_for, self.store, key)
            if await self.in_flight(video_id):
                raise Refusal(409, "conflict", f"{video_id} is being processed (a run is queued or running); replace "
                              f"{key} once it has finished", {"Retry-After": "60"})  # fmt: skip
        # The slot is counted before the next await: a burst of uploads cannot all pass the check
        # while the first ones look up their id (they would then queue, unbounded, for a thread).
        if self._active >= self.max_concurrent:
            raise Refusal(503, "service unavailable", f"{self.max_concurrent} uploads already in progress; retry soon",
                          {"Retry-After": "10"})  # fmt: skip
        # One token cannot take every slot (a slow link, or eight slow uploads on purpose).
        client = principal.subject or ""
        if self._by_client.get(client, 0) >= self.max_per_client:
            raise Refusal(503, "service unavailable", f"this token already has {self.max_per_client} uploads in "
                          "progress; retry when one has finished", {"Retry-After": "10"})  # fmt: skip
        self._active += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        try:
            return await self._store_upload(request, key, replace, principal)
        finally:
            self._active -= 1
            if (left := self._by_client.pop(client) - 1) > 0:
                self._by_client[client] = left

    async def _store_upload(self, request: Request, key: str, replace: bool, principal: Principal) -> Response:
        limit = self.max_upload_bytes
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.max_concurrent)
        video_id = await run_in_threadpool(video_id_for, self.store, key)
        stream = request.stream()
        received = 0
        window_start, window_bytes = anyio.current_time(), 0

        async def next_chunk() -> bytes | None:
            # Each `idle_seconds` window must bring `min_window_bytes`: a trickle (a byte now and
            # then, never quite silent) is cut off like silence, or it would hold a slot for ever.
            nonlocal window_start, window_bytes
            try:
                with anyio.fail_after(max(0.0, window_start + self.idle_seconds - anyio.current_time())):
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                return None
            window_bytes += len(chunk)
            if window_bytes >= self.min_window_bytes:
                window_start, window_bytes = anyio.current_time(), 0
            return chunk

        def chunks() -> Iterator[bytes]:
            # Runs in the store's worker thread; each chunk is read on the event loop as the store asks.
            nonlocal received
            while (chunk := anyio.from_thread.run(next_chunk)) is not None:
                received += len(chunk)
                if received > limit:
                    raise TooLarge
                if chunk:
                    yield chunk
            if received == 0:
                raise EmptyUpload

        put = functools.partial(self.store.put_stream, key, chunks(), replace=replace)
        try:
            stored = await anyio.to_thread.run_sync(put, limiter=self._slots)
        except TimeoutError:
            self._count("aborted", received)
            raise Refusal(408, "request timeout", f"less than {self.min_window_bytes} bytes received in "
                          f"{self.idle_seconds:g} s; nothing was kept", {"Connection": "close"}) from None  # fmt: skip
        except TooLarge:
            self._count("too_large", received)
            raise Refusal(413, "payload too large", f"uploads are limited to {limit} bytes (AUTOEDIT_MAX_UPLOAD_MB)",
                          {"Connection": "close"}) from None  # fmt: skip
        except EmptyUpload:
            self._count("refused", 0)
            raise Refusal(400, "bad request", "the upload is empty") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._count("aborted", received)
            log.error("upload refused: the store is full", extra={"key": key, "received": received})
            raise Refusal(507, "insufficient storage", "the store is full; nothing was kept",
                          {"Connection": "close"}) from None  # fmt: skip
        except ClientDisconnect:
            self._count("aborted", received)
            log.info("upload abandoned by the client", extra={"key": key, "received": received})
            raise Refusal(400, "bad request", "the client went away during the upload; nothing was kept") from None
        if stored is None:
            self._count("refused", received)
            raise Refusal(409, "conflict", f"{key} was uploaded by someone else meanwhile; nothing was replaced")
        self._count("stored", stored.size)
        log.info("upload stored", extra={"key": key, "video_id": video_id, "size": stored.size,
                                         "subject": principal.subject})  # fmt: skip
        body = {"video_id": video_id, "key": key, "uri": self.store.uri(key), "etag": stored.etag, "size": stored.size}
        return JSONResponse(body, 201)

    def _count(self, outcome: str, size: int) -> None:
        if self.metrics is not None:
            self.metrics.uploads.labels(outcome).inc()
            self.metrics.upload_bytes.labels(outcome).inc(size)
