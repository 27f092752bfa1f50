"""The engine's temporary folders and partial outputs: named after their process, swept once dead.

A render killed with -9 leaves its `autoedit-plan-*`, `autoedit-render-*` and
`autoedit-loudness-*` folders in the temp directory and a hidden `.<name>.<pid>-<id>.part` beside
its output. Their names carry the owner's pid, so a sweep deletes only what a dead process left,
and only once it is older than a safe age: never the files of a render in flight. Names without
a pid (written before this naming) are judged by age alone.

Reads no environment variables (the temp directory is Python's: TMPDIR).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

# An hour is far beyond any gap between writes of a live render (ffmpeg writes continuously).
SAFE_AGE_SECONDS = 3600.0
TEMP_DIR_KINDS = ("plan", "render", "loudness")
_TEMP_DIR_RE = re.compile(r"^autoedit-(?:" + "|".join(TEMP_DIR_KINDS) + r")-(?:(\d+)-)?")
_PARTIAL_RE = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.part$")


def temp_dir(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder `autoedit-<kind>-<pid>-*` (kind: plan, render, loudness)."""
    if kind not in TEMP_DIR_KINDS:
        raise ValueError(f"unknown temp folder kind {kind!r}")
    return tempfile.TemporaryDirectory(prefix=f"autoedit-{kind}-{os.getpid()}-")


def partial_path(output: Path) -> Path:
    """The hidden name `output` is written under before the atomic rename."""
    return output.with_name(f".{output.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")


def process_alive(pid: int, not_after: float) -> bool:
    """True if process `pid` runs (not a zombie) and started no later than `not_after` (epoch s).

    The start time guards against pid reuse: a new process with a dead one's pid is younger.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    btime = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    started = float(btime.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    # btime and the start tick are whole-second/tick precise: allow a little slack.
    return started <= not_after + 2.0


def _abandoned(path: Path, pid: str | None, older_than: float, now: float) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if now - st.st_mtime <= older_than:
        return False
    # The owner started before it created the file, so before the file's ctime (which, unlike
    # mtime, nothing can set back): a process with that pid started later is not the owner.
    return pid is None or not process_alive(int(pid), st.st_ctime)


def _sweep(folder: Path, pattern: re.Pattern[str], folders: bool, older_than: float, now: float | None) -> list[Path]:
    now = time.time() if now is None else now
    removed: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = pattern.match(entry.name)
            kind_ok = entry.is_dir(follow_symlinks=False) if folders else entry.is_file(follow_symlinks=False)
            if match and kind_ok and _abandoned(path := Path(entry.path), match.group(1), older_than, now):
                if folders:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def sweep_temp_dirs(
    folder: str | Path | None = None, older_than: float = SAFE_AGE_SECONDS, now: float | None = None
) -> list[Path]:
    """Delete the engine's temp folders in `folder` (default: the temp dir) left by dead processes."""
    return _sweep(Path(folder or tempfile.gettempdir()), _TEMP_DIR_RE, True, older_than, now)


def sweep_partials(folder: str | Path, older_than: float = SAFE_AGE_SECONDS, now: float | None = None) -> list[Path]:
    """Delete `.<name>.<pid>-<id>.part` files in `folder` left by dead renders."""
    return _sweep(Path(folder), _PARTIAL_RE, False, older_than, now)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name opened with "x" (not mkstemp, which makes files 0600): the export gets
    # the usual permissions, and a crash leaves a dot-file, never a half file at the final name.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
