"""`source_video`: the upload, located, probed, validated and fingerprinted."""

import hashlib
from pathlib import Path

import dagster as dg

from ..engine.config import InputLimits
from ..engine.errors import MediaError
from ..engine.pipeline import probe_source
from ..models import SourceVideo
from ..names import INGEST_GROUP, TAG_UPLOAD_KEY, UPLOADS_PREFIX
from ..partitions import VideoIdTaken, claim_video_id, maps_to, uploads_for_video_id, videos
from ..resources import JSON_IO_MANAGER_KEY, MediaStore
from .config import IngestConfig, settings_of

# Object stores hiccup; a decode error does not go away on retry, so only I/O-heavy steps retry.
IO_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_unusable_key(store: MediaStore, key: str) -> None:
    """Fail the run (never retried) if `key` names no object this store reads (`uploads//x.mp4` or a
    symbolic link in a local folder)."""
    try:
        store.uri(key)
    except ValueError as exc:
        raise dg.Failure(
            description=f"the upload key cannot be read from this store: {exc}",
            metadata={"reason": "unusable upload key", "upload_key": key},
            allow_retries=False,
        ) from exc


def find_upload(store: MediaStore, video_id: str, tags: dict[str, str]) -> str:
    """The upload key of `video_id`: from the sensor's run tag, else by listing uploads/ (backfills)."""
    tagged = tags.get(TAG_UPLOAD_KEY)
    if tagged:
        refuse_unusable_key(store, tagged)
    if tagged and maps_to(tagged, video_id) and store.exists(tagged):
        return tagged
    # Two uploads sharing a legacy 32-bit id and no owner between them: refused, never guessed.
    found = uploads_for_video_id(store, video_id)
    if len(found) == 1:
        return found[0]
    reason = "upload missing" if not found else "ambiguous video id"
    raise dg.Failure(
        description=f"{len(found) or 'no'} uploads under {UPLOADS_PREFIX} map to video id {video_id}",
        metadata={"reason": reason, "video_id": video_id},
        allow_retries=False,
    )


def claim_for_run(store: MediaStore, video_id: str, upload_key: str, run_id: str) -> None:
    """Claim `video_id` for `upload_key`, or fail the run (never retried) if another upload owns it."""
    try:
        claim_video_id(store, video_id, upload_key, run_id)
    except VideoIdTaken as exc:
        raise dg.Failure(
            description=str(exc),
            # The quarantine sensor reads `refused_upload_key` and files the record under it.
            metadata={"reason": "video id collision", "video_id": video_id, "owner_upload_key": exc.owner,
                      "refused_upload_key": upload_key},
            allow_retries=False,
        ) from exc  # fmt: skip


def media_failure(exc: MediaError, upload_key: str) -> dg.Failure:
    """A run failure whose reason the UI and the quarantine record show verbatim."""
    return dg.Failure(
        description=str(exc),
        metadata={"reason": str(exc), "error_code": exc.code, "upload_key": upload_key},
        allow_retries=False,
    )


@dg.asset(
    partitions_def=videos,
    group_name=INGEST_GROUP,
    io_manager_key=JSON_IO_MANAGER_KEY,
    kinds={"ffmpeg", "s3"},
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
)
def source_video(context: dg.AssetExecutionContext, config: IngestConfig, store: MediaStore) -> dg.Output[SourceVideo]:
    """The uploaded file: located, probed, validated against the limits, fingerprinted (sha256)."""
    video_id = context.partition_key
    upload_key = find_upload(store, video_id, context.run.tags)
    refuse_unusable_key(store, upload_key)
    # Before anything is written for this id: a second upload on it is refused here.
    claim_for_run(store, video_id, upload_key, context.run.run_id)
    limits = settings_of(config, InputLimits)
    with store.local_copy(upload_key) as path:
        try:
            info = probe_source(path, limits)
        except MediaError as exc:
            raise media_failure(exc, upload_key) from exc
        sha256 = sha256_of(path)
    uri = store.uri(upload_key)
    value = SourceVideo(
        video_id=video_id,
        upload_key=upload_key,
        uri=uri,
        sha256=sha256,
        size_bytes=info.size_bytes,
        info=info.model_copy(update={"path": uri}),
    )
    return dg.Output(
        value,
        data_version=dg.DataVersion(sha256),
        metadata={
            "upload": dg.MetadataValue.path(uri),
            "sha256": sha256,
            "duration_s": info.duration,
            "size": f"{info.width}x{info.height}",
            "fps": info.fps_fraction,
            "audio": info.has_audio,
            "video_codec": info.video_codec or "",
            "rotation": info.rotation,
            "variable_frame_rate": info.variable_frame_rate,
        },
    )
