"""Safe invocation of ffmpeg and ffprobe.

Every call is an argument list (never a shell). Inputs are opened as `file:<absolute path>`, so a
name starting with `-` or holding `:` is never read as an option or a protocol, and only a fixed
list of container demuxers and the `file`/`pipe` protocols are allowed: an HLS playlist or a
concat script saved as `.mp4` is refused instead of making ffmpeg read other files or the network.
"""

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import CorruptMedia, FFmpegFailed, MediaError, UnsafeMedia, UnsupportedMedia

FFMPEG = os.environ.get("AUTOEDIT_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("AUTOEDIT_FFPROBE", "ffprobe")

# Demuxers of real media containers. Playlists (hls, dash), scripts (concat, ffmetadata), image
# sequences (image2) and devices are left out on purpose: each can name other inputs.
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,mxf,mpeg,asf,ogg,wav,mp3,aac,h264,hevc,m4v,yuv4mpegpipe"
)
# Demuxers that read other resources named inside the file.
_REFERENCING_DEMUXERS = {"hls", "applehttp", "dash", "concat", "ffmetadata", "image2", "mpl2", "tee"}

LOG_ARGS = ["-hide_banner", "-nostdin", "-loglevel", "error"]


def die_with_parent() -> None:
    """Have Linux kill this process when its parent dies (for processes that must not outlive it)."""
    # ffmpeg ignores SIGPIPE: if the worker that started it is killed (kill -9, OOM), it would
    # keep encoding into an orphaned temp folder. Linux's parent-death signal ends it too.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


# Keyword arguments for every subprocess that runs ffmpeg/ffprobe.
CHILD: dict[str, Any] = {"preexec_fn": die_with_parent} if sys.platform.startswith("linux") else {}


def input_args(path: str | Path, decoder_args: Sequence[str] = ()) -> list[str]:
    """Arguments that open one local media file, restricted to plain containers and local I/O.

    `decoder_args` are input options for the decoders (they must precede `-i`).
    """
    return [
        *decoder_args,
        "-protocol_whitelist", "file,pipe",
        "-format_whitelist", ALLOWED_DEMUXERS,
        "-i", f"file:{Path(path).resolve()}",
    ]  # fmt: skip


def output_arg(path: str | Path) -> str:
    """An output path as ffmpeg must get it: `file:<absolute path>`.

    A bare relative name is parsed for a protocol first: `-o pipe:1/out.mp4` would write to stdout.
    """
    return f"file:{Path(path).resolve()}"


# Text formats that make ffmpeg open other resources. Some are only recognised by ffmpeg with
# particular tags, so a file that starts like one is refused outright rather than left to probing.
_PLAYLIST_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"[playlist]", b"<smil")


def sniff_unsafe(path: str | Path) -> MediaError | None:
    """An `UnsafeMedia` error if the file's first bytes are a playlist or script, else None."""
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic in _PLAYLIST_MAGIC:
        if head[: len(magic)].lower() == magic.lower():
            kind = magic.decode().strip("#<?[]")
            return UnsafeMedia(f"{Path(path).name}: a {kind} text file can name other inputs; refused for safety")
    return None


def _looks_like_iso_media(path: str | Path) -> bool:
    # Every MP4/MOV starts with a box: 4 bytes of size, then a 4-letter type such as ftyp.
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) == 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def media_error_from_stderr(stderr: str, path: str | Path) -> MediaError | None:
    """Turn what ffmpeg/ffprobe said about an input into a typed, one-line error, if it is one."""
    name = Path(path).name
    refused = re.search(r"\[(\w+) @ [^\]]+\] Format not on whitelist", stderr)
    if refused:
        demuxer = refused.group(1)
        if demuxer in _REFERENCING_DEMUXERS:
            return UnsafeMedia(f"{name}: a {demuxer} file names other inputs; refused for safety")
        return UnsupportedMedia(f"{name}: container '{demuxer}' is not an accepted video format")
    if "moov atom not found" in stderr:
        if not _looks_like_iso_media(path):
            return CorruptMedia(f"{name}: not a media file ffmpeg can read")
        return CorruptMedia(f"{name}: truncated or incomplete MP4 (no moov atom)")
    if "Invalid data found when processing input" in stderr or "could not find codec parameters" in stderr:
        return CorruptMedia(f"{name}: not a media file ffmpeg can read")
    if "is not in allowed_segment_extensions" in stderr or "not on whitelist" in stderr:
        return UnsafeMedia(f"{name}: refers to other resources; refused for safety")
    return None


def run(args: list[str], *, timeout: float | None = None, media: str | Path | None = None) -> str:
    """Run one ffmpeg/ffprobe command to completion and return its stdout.

    Errors about `media` become typed `MediaError`s; anything else is `FFmpegFailed`.
    """
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **CHILD)
    if proc.returncode != 0:
        if media is not None and (err := media_error_from_stderr(proc.stderr, media)):
            raise err
        raise FFmpegFailed(args, proc.returncode, proc.stderr)
    return proc.stdout


class ProbeRun:
    """An ffprobe of one file, started at once and read later (`media_info.probe` reads it).

    Stdlib only, so a command can start it before importing the engine: ffprobe works while
    Python imports. The file's own checks that need no settings come first (missing, empty,
    a playlist or script), so ffprobe never opens what `probe` would refuse.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UnsupportedMedia(f"{self.path}: is a folder, not a video file")
        if not self.path.is_file():
            raise CorruptMedia(f"{self.path.name}: no such file")
        if self.path.stat().st_size == 0:
            raise CorruptMedia(f"{self.path.name}: empty file (0 bytes)")
        if unsafe := sniff_unsafe(self.path):
            raise unsafe
        self.args = [FFPROBE, "-hide_banner", "-v", "error", "-show_format", "-show_streams",
                     "-of", "json", *input_args(self.path)]  # fmt: skip
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **CHILD)

    def cancel(self) -> None:
        """Stop the ffprobe: its answer is not needed (the command was refused first)."""
        self.proc.kill()
        self.proc.communicate()

    def output(self, timeout: float = 120) -> str:
        """ffprobe's JSON; its errors about the file as typed `MediaError`s."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        if self.proc.returncode != 0:
            if err := media_error_from_stderr(stderr, self.path):
                raise err
            raise FFmpegFailed(self.args, self.proc.returncode, stderr)
        return stdout


def parse_progress(lines: Iterator[str], total_s: float, on_progress: Callable[[float], None]) -> None:
    """Feed `on_progress` a 0..1 fraction from ffmpeg's `-progress` key=value stream."""
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit() and total_s > 0:
            on_progress(min(1.0, max(0.0, int(value) / 1e6 / total_s)))
        elif key == "progress" and value == "end":
            on_progress(1.0)


def run_with_progress(
    args: list[str], total_s: float, on_progress: Callable[[float], None] | None, *, media: str | Path
) -> None:
    """Run an ffmpeg command that writes files, reporting progress through `-progress pipe:1`."""
    cmd = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, **CHILD) as proc:
        out_pipe, err_pipe = proc.stdout, proc.stderr
        assert out_pipe is not None and err_pipe is not None
        # stderr is drained by a thread so a chatty ffmpeg can never block on a full pipe.
        err_chunks: list[str] = []
        drain = threading.Thread(target=lambda: err_chunks.append(err_pipe.read()), daemon=True)
        drain.start()
        parse_progress(iter(out_pipe.readline, ""), total_s, on_progress or (lambda _f: None))
        proc.wait()
        drain.join()
    if proc.returncode != 0:
        stderr = "".join(err_chunks)
        if err := media_error_from_stderr(stderr, media):
            raise err
        raise FFmpegFailed(cmd, proc.returncode, stderr)
