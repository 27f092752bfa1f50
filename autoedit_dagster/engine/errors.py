"""Typed errors for input that cannot be edited.

Every `MediaError` carries a one-line, human-readable reason: the CLI prints it and exits 2,
the Dagster assets put it in the run's failure metadata and in `quarantine/`.
"""


class MediaError(Exception):
    """Input that cannot be edited; the message is shown to the person who supplied it."""

    code = "media_error"


class CorruptMedia(MediaError):
    """The file is empty, truncated, or not a media file ffmpeg can read."""

    code = "corrupt_media"


class UnsupportedMedia(MediaError):
    """A readable file that this pipeline does not edit (no video stream, wrong container...)."""

    code = "unsupported_media"


class UnsafeMedia(MediaError):
    """A file that would make ffmpeg read other files or the network (playlists, concat scripts)."""

    code = "unsafe_media"


class MediaTooLarge(MediaError):
    """Over a configured limit (size, duration, resolution), refused before any decode."""

    code = "media_too_large"


class BadRequest(MediaError):
    """An edit asked for something it cannot honour (an output it cannot write, settings out of range)."""

    code = "bad_request"


class FFmpegFailed(RuntimeError):
    """ffmpeg exited non-zero on input that probed fine: an internal error, not bad input."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-5:]
        super().__init__(f"ffmpeg exited {returncode}: {' | '.join(tail)}")
        self.args_list = args
        self.returncode = returncode
        self.stderr = stderr

    def __reduce__(self) -> tuple:
        # Rebuilt from its own arguments when it crosses a process boundary (the planning child).
        return (FFmpegFailed, (self.args_list, self.returncode, self.stderr))
