"""Upload sensor (new files under `uploads/` -> `videos` partitions and runs) and quarantine sensor.

Each tick lists `uploads/` through the MediaStore (paginated), keeps only finished video files,
and returns a `SensorResult` with one `RunRequest` per new upload (``run_key =
"<video_id>:<etag>"``), the `videos` partitions to add, and the new cursor. An upload keeps the
32-bit id of an earlier version only if that partition exists and belongs to it
(`partitions.resolve_video_ids`); every other upload gets its 64-bit id. It never mutates the
instance; the daemon applies the result, and its run-key de-duplication is the backstop if the
cursor is ever reset.

Cursor (JSON, a few KB whatever the burst: nothing in it grows with the number of uploads):

- ``wm``: a high-water mark ``[mtime, key]``; every candidate at or before it, in (mtime, key)
  order, is handled. It only advances over a handled prefix and never past
  ``now - late_arrival_seconds``, so an object listed late (S3 reports a multipart upload's
  *start* time) is still seen.
- ``hm``, ``n``, ``s``: the handled mark after it, and the count and 64-bit digest sum of the
  uploads handled in (wm, hm]. While the range lists exactly those (the sum matches), nothing
  needs remembering one by one; when it does not (an upload listed late inside it), the runs
  tagged with the range's upload keys say which ones were handled.
- ``pending``: ``{sha1(key)[:16]: [size, mtime]}`` of at most `PENDING_MAX` files seen still
  settling (too young, or changed since the previous tick); the walk stops at the first
  settling file it cannot remember, and goes on from there next tick.

The quarantine sensor (a run-failure sensor) writes ``quarantine/<video_id>.json`` with the
reason a video's run failed (a run refused because its id belongs to another upload gets a record
of its own, so the owner's is never overwritten) and deletes what the run staged under
``staging/<run_id>/``; the upload itself is never touched.

Reads no environment variables: storage comes from the `store` resource.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from autoedit_dagster.names import (
    TAG_UPLOAD_ETAG,
    TAG_UPLOAD_KEY,
    TAG_VIDEO_ID,
    UPLOADS_PREFIX,
    is_video_upload,
    quarantine_key,
    staging_prefix,
)
from autoedit_dagster.partitions import (
    is_video_id,
    legacy_video_id_for_upload,
    resolve_video_ids,
    uploads_for_video_id,
    videos,
)
from autoedit_dagster.resources.media_store import MediaStore, StoredObject

RunRequestFn = Callable[[StoredObject, str], Sequence[dg.RunRequest]]


def _order(obj: StoredObject) -> tuple[float, str]:
    return (obj.mtime, obj.key)


def _digest(obj: StoredObject) -> str:
    """64 bits of sha1(key, etag): one upload version."""
    return _version_digest(obj.key, obj.etag)


# Every tick walks the whole recent listing: a digest is computed once per upload version.
@functools.lru_cache(maxsize=1 << 16)
def _version_digest(key: str, etag: str) -> str:
    return hashlib.sha1(f"{key}\0{etag}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


@functools.lru_cache(maxsize=1 << 16)
def _key_digest(key: str) -> str:
    # Pending files are remembered by a digest of their key: keys may be long, the cursor may not.
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class RangeSummary:
    """The handled uploads in (watermark, handled mark], summed: their count and digest sum mod 2**64.

    Equal summaries mean the range still lists exactly the uploads handled there (a new one would
    have to hit a 64-bit sum); a different one means something was listed late or went away.
    """

    count: int = 0
    total: int = 0

    @classmethod
    def of(cls, digests: Iterable[str]) -> RangeSummary:
        items = list(digests)
        return cls(len(items), sum(int(d, 16) for d in items) % 2**64)


# Files seen still settling that the cursor remembers (by key digest): a fixed bound, so a burst
# of young files cannot grow it; the rest are simply looked at again next tick.
PENDING_MAX = 64


@dataclass
class UploadCursor:
    """The sensor's memory between ticks (see the module docstring); a few KB whatever the burst."""

    watermark: tuple[float, str] | None = None
    handled_mark: tuple[float, str] | None = None
    handled: RangeSummary = field(default_factory=RangeSummary)
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)  # key digest -> (size, mtime)
    legacy_done: frozenset[str] = frozenset()  # a version-1 cursor's 12-hex digests, read once

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 2,
                "wm": list(self.watermark) if self.watermark else None,
                "hm": list(self.handled_mark) if self.handled_mark else None,
                "n": self.handled.count,
                "s": format(self.handled.total, "x"),
                "pending": {key: list(value) for key, value in sorted(self.pending.items())},
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | None) -> UploadCursor:
        """Parse a cursor; an empty or unreadable one starts over (run keys prevent duplicates)."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            mark, handled_mark = data.get("wm"), data.get("hm")
            if data.get("v") == 1:  # before the summary: its `done` digests are consulted once
                return cls(
                    watermark=(float(mark[0]), str(mark[1])) if mark else None,
                    legacy_done=frozenset(str(item) for item in data.get("done", ())),
                )
            return cls(
                watermark=(float(mark[0]), str(mark[1])) if mark else None,
                handled_mark=(float(handled_mark[0]), str(handled_mark[1])) if handled_mark else None,
                handled=RangeSummary(int(data["n"]), int(data["s"], 16)),
                pending={str(k): (int(v[0]), float(v[1])) for k, v in data.get("pending", {}).items()},
            )
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return cls()


@dataclass(frozen=True)
class UploadPlan:
    """What one tick decided: uploads to request now, the next cursor, and what was held back."""

    requests: list[StoredObject]
    cursor: UploadCursor
    waiting: int  # still settling
    deferred: int  # ready but over the per-tick cap, or behind a file the cursor cannot track yet


# Given uploads, the digests of those already handled (runs exist for them): asked only when the
# handled range no longer adds up, i.e. an upload was listed late inside it.
HandledLookup = Callable[[Sequence[StoredObject]], set[str]]


def plan_uploads(
    objects: Iterable[StoredObject],
    cursor: UploadCursor,
    *,
    now: float,
    max_runs: int,
    settle_seconds: float,
    late_arrival_seconds: float,
    handled_lookup: HandledLookup | None = None,
) -> UploadPlan:
    """Decide one tick: pure, so the cursor rules are testable without Dagster.

    Uploads after the watermark, in (mtime, key) order, are walked once: those up to the handled
    mark were handled (unless pending), the rest are requested in order, at most `max_runs`; the
    walk stops at the first upload that is neither handled, requested nor remembered as pending,
    and the handled mark moves to just before it. The watermark follows over the handled prefix,
    but never into the last `late_arrival_seconds` (an object listed late there is still seen).
    """
    mark, handled_mark = cursor.watermark, cursor.handled_mark
    fresh = sorted(
        (obj for obj in objects if is_video_upload(obj.key) and (mark is None or _order(obj) > mark)),
        key=_order,
    )
    in_range = [obj for obj in fresh if handled_mark is not None and _order(obj) <= handled_mark]
    settled_in_range = [obj for obj in in_range if _key_digest(obj.key) not in cursor.pending]
    if RangeSummary.of(_digest(obj) for obj in settled_in_range) == cursor.handled:
        known = {_digest(obj) for obj in settled_in_range}
    elif handled_lookup is not None:  # listed late (or gone): ask which ones have runs
        known = handled_lookup(settled_in_range)
    else:
        known = set()
    known |= {_digest(obj) for obj in fresh if _digest(obj)[:12] in cursor.legacy_done}

    requests: list[StoredObject] = []
    pending: dict[str, tuple[int, float]] = {}
    handled: list[StoredObject] = []  # the covered prefix's handled uploads, in order
    covered: tuple[float, str] | None = mark
    waiting = 0
    stop = len(fresh)
    for index, obj in enumerate(fresh):
        if _digest(obj) in known:
            handled.append(obj)
            covered = _order(obj)
            continue
        seen = cursor.pending.get(_key_digest(obj.key))
        growing = now - obj.mtime < settle_seconds or (seen is not None and seen != (obj.size, obj.mtime))
        if growing:
            waiting += 1
            if len(pending) >= PENDING_MAX:
                stop = index
                break
            pending[_key_digest(obj.key)] = (obj.size, obj.mtime)
        elif len(requests) < max(0, max_runs):
            requests.append(obj)
            handled.append(obj)
        else:
            stop = index
            break
        covered = _order(obj)
    ready_left = sum(1 for obj in fresh[stop:] if _digest(obj) not in known)

    # Fold the handled prefix into the watermark, but keep a late-arrival window behind `now`.
    horizon = now - late_arrival_seconds
    new_mark = mark
    handled_digests = {_digest(obj) for obj in handled}
    for obj in fresh[:stop]:
        if obj.mtime > horizon or _digest(obj) not in handled_digests:
            break
        new_mark = _order(obj)
    summary = RangeSummary.of(_digest(obj) for obj in handled if new_mark is None or _order(obj) > new_mark)
    new_handled_mark = covered if covered is not None and (new_mark is None or covered > new_mark) else None
    return UploadPlan(
        requests=requests,
        cursor=UploadCursor(
            watermark=new_mark,
            handled_mark=new_handled_mark,
            handled=summary if new_handled_mark else RangeSummary(),
            pending=pending,
        ),
        waiting=waiting,
        deferred=ready_left,
    )


def default_run_requests(upload: StoredObject, video_id: str) -> Sequence[dg.RunRequest]:
    """One run of the target job for the upload's `videos` partition."""
    return [
        dg.RunRequest(
            partition_key=video_id,
            run_key=f"{video_id}:{upload.etag}",
            tags={TAG_VIDEO_ID: video_id, TAG_UPLOAD_KEY: upload.key, TAG_UPLOAD_ETAG: upload.etag},
        )
    ]


def _existing_partitions(instance: dg.DagsterInstance, ids: Sequence[str]) -> set[str]:
    # A few ids: one indexed lookup each. A big first tick over an archive: one query for all.
    if len(ids) <= 50:
        return {video_id for video_id in ids if instance.has_dynamic_partition(videos.name, video_id)}
    return set(instance.get_dynamic_partitions(videos.name)) & set(ids)


def _uploads_with_runs(instance: dg.DagsterInstance, uploads: Sequence[StoredObject]) -> set[str]:
    """Digests of the uploads some run was requested for (by the upload key and etag tags)."""
    found: set[str] = set()
    keys = sorted({upload.key for upload in uploads})
    for start in range(0, len(keys), 500):
        records = instance.get_run_records(dg.RunsFilter(tags={TAG_UPLOAD_KEY: keys[start : start + 500]}))
        for record in records:
            tags = record.dagster_run.tags
            found.add(_digest(StoredObject(tags[TAG_UPLOAD_KEY], 0, tags.get(TAG_UPLOAD_ETAG, ""), 0.0)))
    return found


def build_upload_sensor(
    job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition | str,
    *,
    name: str = "upload_sensor",
    minimum_interval_seconds: int = 10,
    max_runs_per_tick: int = 20,
    settle_seconds: float = 5.0,
    late_arrival_seconds: float = 3600.0,
    run_requests_for: RunRequestFn = default_run_requests,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """A sensor turning new files under `uploads/` into `videos` partitions and runs of `job`.

    `job` (or its name) must be partitioned by `videos`, unless `run_requests_for` builds other
    requests (e.g. one per profile). `settle_seconds`: a file younger than this, or whose size or
    mtime changed since the last tick, waits. `clock` exists for tests.
    """
    target = {"job_name": job} if isinstance(job, str) else {"job": job}

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Requests a run per new video under uploads/ (at most {max_runs_per_tick} per tick); "
            "ignores hidden, partial and still-growing files."
        ),
        **target,
    )
    def upload_sensor(context: dg.SensorEvaluationContext, store: MediaStore) -> dg.SensorResult:
        plan = plan_uploads(
            store.list(UPLOADS_PREFIX),
            UploadCursor.from_json(context.cursor),
            now=clock(),
            max_runs=max_runs_per_tick,
            settle_seconds=settle_seconds,
            late_arrival_seconds=late_arrival_seconds,
            handled_lookup=lambda uploads: _uploads_with_runs(context.instance, uploads),
        )
        keys = [upload.key for upload in plan.requests]
        legacy = _existing_partitions(context.instance, [legacy_video_id_for_upload(key) for key in keys])
        resolved = resolve_video_ids(store, keys, legacy)
        run_requests: list[dg.RunRequest] = []
        ids: list[str] = []
        for upload in plan.requests:
            video_id = resolved[upload.key]
            run_requests.extend(run_requests_for(upload, video_id))
            if video_id not in ids:
                ids.append(video_id)
        # Read-only check: a re-uploaded file (new etag) reuses its partition.
        existing = _existing_partitions(context.instance, ids)
        new_ids = [video_id for video_id in ids if video_id not in existing]
        if plan.waiting or plan.deferred:
            context.log.info(f"{plan.waiting} upload(s) still settling, {plan.deferred} deferred to next tick")
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[videos.build_add_request(new_ids)] if new_ids else [],
            cursor=plan.cursor.to_json(),
            skip_reason=None if run_requests else "no new finished uploads",
        )

    return upload_sensor


# ---------------------------------------------------------------------------------- quarantine

# Where a run names its video: our own tag first, then Dagster's partition tags.
_VIDEO_TAGS = (TAG_VIDEO_ID, "dagster/partition/videos", "dagster/partition/video", "dagster/partition")


def video_id_for_run(tags: Mapping[str, str]) -> str | None:
    """The video a run worked on, from its tags; None for runs not about exactly one video."""
    for tag in _VIDEO_TAGS:
        value = tags.get(tag)
        # Validated: the id becomes a key under quarantine/, a crafted tag must not escape it.
        if value and is_video_id(value):
            return value
    return None


def _user_error(error: object) -> tuple[str, str]:
    """(class name, message) of the user's exception inside Dagster's step-error wrappers."""
    while getattr(error, "cls_name", "").startswith("Dagster") and getattr(error, "cause", None):
        error = error.cause  # type: ignore[attr-defined]
    cls_name = getattr(error, "cls_name", "") or ""
    message = (getattr(error, "message", "") or "").strip()
    # The message is traceback's "package.module.Class: text"; keep the text.
    head, sep, rest = message.partition(": ")
    if sep and cls_name and head.rsplit(".", 1)[-1] == cls_name:
        message = rest
    return cls_name, message


def _find_upload(store: MediaStore, video_id: str) -> str | None:
    # Runs launched from the UI or a backfill carry no upload tag; failures are rare enough
    # that one listing of uploads/ to map the id back is fine.
    found = uploads_for_video_id(store, video_id)
    return found[0] if found else None


def _refused_upload(context: dg.RunFailureSensorContext) -> str | None:
    """The upload a run was refused for because its id belongs to another (see `claim_video_id`)."""
    for event in context.get_step_failure_events():
        failure = getattr(event.event_specific_data, "user_failure_data", None)
        entry = failure.metadata.get("refused_upload_key") if failure else None
        if entry is not None:
            return str(entry.value)
    return None


def _uri(store: MediaStore, key: str | None) -> str | None:
    # A key the store refuses (`uploads//x.mp4` on a local folder) is why such a run failed: the
    # record must still be written, with the reason, rather than the sensor failing too.
    try:
        return store.uri(key) if key else None
    except ValueError:
        return None


def quarantine_record(context: dg.RunFailureSensorContext, store: MediaStore, now: datetime) -> dict | None:
    """The JSON written to quarantine/<video_id>.json for a failed run (None if no single video)."""
    run = context.dagster_run
    video_id = video_id_for_run(run.tags)
    if video_id is None:
        return None
    refused = _refused_upload(context)
    upload_key = refused or run.tags.get(TAG_UPLOAD_KEY) or _find_upload(store, video_id)
    steps = []
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        error_class, message = _user_error(getattr(data, "error", None))
        steps.append({"step": event.step_key, "error_class": error_class, "message": message})
    first = steps[0] if steps else None
    return {
        "video_id": video_id,
        "quarantine_key": quarantine_key(video_id, refused),
        "upload_key": upload_key,
        "upload_uri": _uri(store, upload_key),
        "run_id": run.run_id,
        "job_name": run.job_name,
        "reason": f"{first['error_class']}: {first['message']}" if first else context.failure_event.message,
        "run_message": context.failure_event.message,
        "steps": steps,
        "failed_at": now.isoformat(timespec="seconds"),
    }


def build_quarantine_sensor(
    *,
    name: str = "quarantine_sensor",
    monitored_jobs: Sequence[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] | None = None,
    minimum_interval_seconds: int = 10,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A run-failure sensor writing quarantine/<video_id>.json and deleting what the run staged.

    Uploads are never touched.
    `monitored_jobs` defaults to every job in the code location.
    """

    @dg.run_failure_sensor(
        name=name,
        monitored_jobs=monitored_jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Records why a video's run failed in quarantine/<video_id>.json; deletes what it staged.",
    )
    def quarantine_sensor(context: dg.RunFailureSensorContext, store: MediaStore) -> None:
        run_id = context.dagster_run.run_id
        # The run is over: what it staged was never verified and promoted, and never will be.
        if removed := store.delete_prefix(staging_prefix(run_id)):
            context.log.info(f"deleted {removed} unpublished file(s) the run staged")
        record = quarantine_record(context, store, datetime.now(UTC))
        if record is None:
            context.log.info(f"run {run_id} is not about one video; nothing quarantined")
            return
        store.write_bytes(record["quarantine_key"], json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))
        context.log.info(f"quarantined {record['video_id']} ({record['quarantine_key']}): {record['reason']}")

    return quarantine_sensor
