"""Values the assets hand each other (stored as JSON by the pydantic IO manager)."""

from typing import Literal

from pydantic import BaseModel, Field

from .engine.media_info import MediaInfo
from .names import staging_prefix


class SourceVideo(BaseModel):
    """An accepted upload: where it is, what it is, and its content fingerprint."""

    video_id: str
    upload_key: str
    uri: str
    sha256: str
    size_bytes: int
    info: MediaInfo


class RenderOutput(BaseModel):
    """A render of one profile: staged by its run, published with its companions once verified."""

    video_id: str
    profile: str
    key: str = Field(description="Store key final.mp4 is published at.")
    uri: str
    staged_key: str | None = Field(default=None, description="Where its run staged it before publishing.")
    output_duration: float
    command: list[str]
    integrated_lufs_before: float | None = None
    render_seconds: float

    def key_for_run(self, run_id: str) -> str:
        """The file to read in run `run_id`: this run's staged render, else the published one.

        Another run's staging is never read: it may be a render that failed its checks.
        """
        if self.staged_key and self.staged_key.startswith(staging_prefix(run_id)):
            return self.staged_key
        return self.key


class FileSet(BaseModel):
    """Files published beside a render (previews, exports), by kind."""

    keys: dict[str, str]
    uris: dict[str, str]


class EditReport(BaseModel):
    """Per-video, per-profile numbers for people and the catalog."""

    video_id: str
    profile: str
    upload_key: str
    sha256: str
    source_duration: float
    output_duration: float
    seconds_removed: float
    kept_ratio: float
    kept_ranges: int
    shots: int
    cuts: int
    gradual_transitions: int
    detector: Literal["voice", "loudness"] | None = Field(
        default=None, description="What decided the cut; None when the speech table predates it."
    )
    speech_found_s: float | None = Field(default=None, description="Seconds of speech (or sound) found and kept.")
    speech_notes: list[str] = Field(default_factory=list, description='E.g. "no speech found: nothing cut".')
    render_uri: str
    exports: dict[str, str]
    previews: dict[str, str]
    finished_at: str
