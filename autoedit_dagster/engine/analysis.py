"""The one decode pass: per-frame loudness, scene change, motion and subject, as a polars table.

ffmpeg decodes the file once and streams four pipes: small YUV 4:2:0 frames
(`AnalysisSettings.width` wide) on stdout, mono PCM for the loudness on a second descriptor, 16 kHz
mono PCM for the voice-activity model (`voice.py`, its own thread) on a third and, for the face
search only, the sampled frames again, larger and in colour (`AnalysisSettings.face_width`), on a
fourth. Python keeps only the previous frame and one row of numbers per frame, so memory does not
grow with the video's length beyond that
per-frame table.

Speed: the pass costs about what a plain `ffmpeg -i IN -f null -` costs. The decoder skips
deblocking (invisible at analysis size, a fifth of H.264 decoding), frames leave ffmpeg in the
decoder's own YUV (converting to RGB costs ffmpeg a tenth of the pass, more than the same on the
small frame in Python), the per-frame work is a few OpenCV calls on a 256-px frame, the face plane
leaves ffmpeg only for the sampled frames (`select`), and the one expensive thing, a whole-picture
face search (~55 ms of CPU on the 640-px plane), runs for only a fraction of the subject samples
(`SubjectTracker`). The pass is CPU-bound, so the decoder gets all cores but one
(`decoder_threads`: on two, one thread, which decodes the same frames for a quarter less CPU than
frame threads do) and Python's work, on threads of lower priority (`AnalysisSettings.nice`), the
time the decode leaves.
"""

import contextlib
import fcntl
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast

import cv2
import numpy as np
import polars as pl

from . import ffmpeg_io, loudness
from .config import AnalysisSettings, ShotSettings
from .errors import CorruptMedia, FFmpegFailed
from .media_info import MediaInfo
from .subjects import Subject, SubjectTracker
from .voice import LEVELLER as VOICE_LEVELLER
from .voice import RATE as VOICE_RATE
from .voice import VoiceActivity

SIGNATURE_SIDE = 16
CHROMA_SIDE = 8
PIPE_BYTES = 1 << 20
# Records read ahead of the pass's niced work (`_Records`), at most this many and this many bytes:
# 4 s of 24 fps frames (~5 MB at the default 256 px), and 24 s of samples' face planes (~33 MB at
# the default 640 px). The finder takes planes in order, so even a short queue never deadlocks
# (the plane it waits for was written with the frame the reader queued); longer ones ride out
# longer bursts of searches.
FRAMES_QUEUED, FRAME_QUEUE_BYTES = 96, 16 << 20
PLANES_QUEUED, PLANE_QUEUE_BYTES = 48, 64 << 20


def _queue_length(most: int, budget: int, record_bytes: int) -> int:
    return max(2, min(most, budget // max(1, record_bytes)))


# A content change this large (the cut detector's default threshold, ContentDetector's too) may be
# a cut: the next subject sample searches the whole frame for faces again.
NEW_SHOT_SCORE = ShotSettings().cut_threshold
# Deblocking is a fifth of H.264/HEVC decoding and only smooths block edges that vanish when the
# frame is shrunk to analysis size; skipping it makes the one analysis pass as cheap as a plain
# decode of the file. Other decoders ignore the option.
ANALYSIS_DECODE_ARGS = ("-skip_loop_filter", "all")
# The graph's filters run on ffmpeg's main thread, beside the decoder: by default each frame's
# scaling is also split over a thread per core, and on a machine the pass already keeps busy the
# hand-offs cost more than they save (the 10-minute film's graph alone: 26.6 s and 27.9 CPU-s
# threaded, 24.4 s and 24.9 CPU-s on one thread, medians of 2 on the 2-core VM).
FILTER_THREADS = ("-filter_complex_threads", "1")
# ffmpeg's rawvideo encoder is frame-threaded by default: every frame goes to a worker thread for
# a copy into a packet and back, and the hand-offs cost more than the copy. With one thread per raw
# output, the film's pass command alone (outputs to /dev/null) took 13.0 s and 13.0 CPU-s instead
# of 13.8 s and 14.0; in the whole pass, where Python shares the cores, 14.9 s instead of 15.1
# (bench/RESULTS.md). The table is the same either way (checked on 90 s of the film, a 1080p
# excerpt, a 1.2 s file and the 30 s talk).
RAW_OUTPUT = ("-f", "rawvideo", "-threads", "1")


def decoder_threads() -> int:
    """Threads for the pass's decoder: the cores this process may use, less one for the pass's Python.

    The pass is CPU-bound: the decode and about a core of Python work (frames, subjects, voice)
    share the machine. Frame-threaded H.264 decoding costs ~25 % more CPU than one thread for the
    same frames (the 10-minute film's excerpt: 1.87 -> 1.44 CPU-s a minute), CPU the Python work
    then lacks; so on two cores the decoder gets one, and on larger machines all but one.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


SILENT_DB = -100.0
# Video-range luma (16-235) to the full-range gray (0-255) that the thresholds downstream use.
_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)

ANALYSIS_SCHEMA: dict[str, pl.DataType] = {
    "frame": pl.UInt32(),
    "time": pl.Float64(),
    "luma": pl.Float32(),
    "scene_score": pl.Float32(),
    "motion": pl.Float32(),
    "signature": pl.Binary(),
    "chroma": pl.Binary(),
    "subject_cx": pl.Float32(),
    "subject_cy": pl.Float32(),
    "subject_w": pl.Float32(),
    "subject_h": pl.Float32(),
    "subject_kind": pl.Utf8(),
    "audio_db": pl.Float32(),
    "speech_prob": pl.Float32(),
    "k_power": pl.Float32(),
    "true_peak": pl.Float32(),
}
"""One row per frame at the source's average rate. Subject columns are in displayed source
pixels and set only on sampled frames; `audio_db` is the RMS level (dBFS) of the audio under the
frame, null when the file has no sound;
`speech_prob` the voice-activity model's probability (0-1) that the frame's audio is a voice, null
when the file has no sound (tables stored before it existed lack the column: `speech.py` then
falls back to the loudness); `signature` is a 16x16 grayscale thumbnail for comparing
frames far apart (flashes, dissolves) without decoding again, and `chroma` its colour: 8x8
thumbnails of the U then the V plane. `k_power` and `true_peak` are EBU R128's ingredients of the
frame's audio as the render delivers it (48 kHz stereo): the mean K-weighted square summed over the
channels and the linear true peak (`loudness.py`), null when the file has no sound."""


def analysis_size(info: MediaInfo, settings: AnalysisSettings) -> tuple[int, int]:
    width = min(settings.width - settings.width % 2, info.width - info.width % 2) or 2
    height = max(2, round(width * info.height / info.width / 2) * 2)
    return width, height


class _Worker(threading.Thread):
    """A thread of the pass: runs `work` at `nice` below the caller and keeps what it raised."""

    def __init__(self, nice: int = 0) -> None:
        super().__init__(daemon=True)
        self.nice = nice
        self.error: BaseException | None = None
        # Set when `work` has returned. After a KeyboardInterrupt lands in `join()`, CPython 3.11
        # marks the joined thread stopped while it still runs (`is_alive()` False, `join()` returns
        # at once), so the interrupted pass waits on this instead.
        self.finished = threading.Event()

    def run(self) -> None:
        _yield_to_decoder(self.nice)
        try:
            self.work()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def work(self) -> None:
        raise NotImplementedError


def _put_unless(into: "queue.Queue[Any]", item: object, stop: threading.Event) -> bool:
    """Put `item`, waiting for room, unless `stop` is set first; whether it was put."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            into.put(item, timeout=0.1)
            return True
    return False


class _Records(_Worker):
    """Reads fixed-size records off one of ffmpeg's pipes into a bounded queue, at the caller's priority.

    The frame and face-plane pipes are read through one each, so ffmpeg never waits on the pass's
    niced Python work: a pipe holds under a second of frames and one and a half face planes, and
    the niced readers behind it, starved while the decode keeps both cores busy, made ffmpeg stop
    on its writes (the whole decode with it) whenever a face search ran long. The queue absorbs
    that instead: `limit` records, then ffmpeg waits (back-pressure, bounded memory). `None`
    follows the last record. Once `stop` is set, what arrives is read and dropped, so ffmpeg can
    still finish or be killed without blocking.
    """

    def __init__(self, pipe: IO[bytes], size: int, limit: int) -> None:
        super().__init__()
        self.pipe, self.size = pipe, size
        self.records: queue.Queue[bytes | None] = queue.Queue(maxsize=limit)
        self.stop = threading.Event()

    def work(self) -> None:
        try:
            while len(record := self.pipe.read(self.size)) == self.size:
                self._offer(record)
        finally:
            self._offer(None)

    def _offer(self, record: bytes | None) -> None:
        """Queue `record`, waiting for room, unless `stop` is set first (then it is dropped)."""
        if _put_unless(self.records, record, self.stop):
            return
        if record is None:  # stopped: what is still queued is dropped, and the end reaches the reader at once
            with contextlib.suppress(queue.Empty):
                while True:
                    self.records.get_nowait()
            self.records.put_nowait(None)  # only this thread puts: there is room

    def get(self) -> bytes | None:
        return self.records.get()


def _pcm_chunks(fd: int, dtype: str = "<i2", channels: int = 1, read_bytes: int = 1 << 16) -> Iterator[np.ndarray]:
    """The samples arriving on pipe `fd`, in chunks of whole sample frames, until it closes.

    Mono chunks are 1-D; with several channels each row is one instant.
    """
    width = np.dtype(dtype).itemsize * channels
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        carry = b""
        while chunk := pipe.read(read_bytes):
            chunk = carry + chunk
            usable = len(chunk) - len(chunk) % width
            carry = chunk[usable:]
            if usable:
                samples = np.frombuffer(chunk[:usable], dtype=dtype)
                yield samples if channels == 1 else samples.reshape(-1, channels)


def _frame_windows(done: int, count: int, rate: int, fps: Fraction) -> np.ndarray:
    """The video frame under each of `count` samples from sample `done` (`render.sample_at`'s inverse)."""
    return (np.arange(done, done + count, dtype=np.int64) * fps.numerator) // (rate * fps.denominator)


class _AudioLevels(_Worker):
    """Reads s16 mono PCM from a pipe and sums energy per video-frame window."""

    def __init__(self, fd: int, rate: int, fps: Fraction) -> None:
        super().__init__()
        self.fd, self.rate, self.fps = fd, rate, fps
        self.energy: list[float] = []
        self.counts: list[int] = []

    def work(self) -> None:
        done = 0
        for pcm in _pcm_chunks(self.fd):
            samples = pcm.astype(np.float64)
            window = _frame_windows(done, len(samples), self.rate, self.fps)
            first = int(window[0])
            sums = np.bincount(window - first, weights=samples * samples)
            counts = np.bincount(window - first)
            grow = first + len(sums) - len(self.energy)
            if grow > 0:
                self.energy.extend([0.0] * grow)
                self.counts.extend([0] * grow)
            for i, (s, c) in enumerate(zip(sums, counts, strict=True)):
                self.energy[first + i] += float(s)
                self.counts[first + i] += int(c)
            done += len(samples)

    def levels(self, frames: int) -> np.ndarray:
        energy = np.zeros(frames)
        counts = np.zeros(frames)
        n = min(frames, len(self.energy))
        energy[:n], counts[:n] = self.energy[:n], self.counts[:n]
        rms = np.sqrt(np.divide(energy, np.maximum(counts, 1))) / 32768.0
        db = 20 * np.log10(np.maximum(rms, 1e-5))
        return np.where(counts > 0, db, SILENT_DB).astype(np.float32)


class _Loudness(_Worker):
    """Reads the 48 kHz stereo branch (L, R, then both K-weighted) and keeps R128's ingredients per frame.

    Per video frame: the mean over its samples of the K-weighted squares summed over the two
    channels (`loudness.kept_loudness` gates blocks of them) and a true-peak estimate.
    """

    def __init__(self, fd: int, fps: Fraction) -> None:
        super().__init__()
        self.fd, self.fps = fd, fps
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def work(self) -> None:
        done = 0
        # Reads of 16384 instants: numpy's per-call cost, not the arithmetic, dominates smaller ones.
        for block in _pcm_chunks(self.fd, "<f4", 2 * loudness.CHANNELS, read_bytes=1 << 18):
            window = _frame_windows(done, len(block), loudness.RATE, self.fps)
            first = int(window[0])
            weighted = block[:, loudness.CHANNELS :].astype(np.float64)
            sums = np.bincount(window - first, weights=(weighted * weighted).sum(axis=1))
            counts = np.bincount(window - first)
            starts = np.flatnonzero(np.diff(window, prepend=window[0] - 1))
            peaks = loudness.true_peaks(block[:, : loudness.CHANNELS], starts)
            self.chunks.append((first, sums, counts, np.asarray(peaks, dtype=np.float64)))
            done += len(block)

    def per_frame(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(K-weighted mean square, true peak) per frame; frames without audio are silent."""
        energy, counts, peaks = np.zeros(frames), np.zeros(frames), np.zeros(frames)
        for first, sums, n, chunk_peaks in self.chunks:
            if first >= frames:
                continue
            end = min(frames, first + len(sums))
            energy[first:end] += sums[: end - first]
            counts[first:end] += n[: end - first]
            # reduceat gives one peak per frame present in the chunk, in order.
            present = np.flatnonzero(n[: end - first]) + first
            np.maximum.at(peaks, present, chunk_peaks[: len(present)])
        return np.divide(energy, np.maximum(counts, 1)).astype(np.float32), peaks.astype(np.float32)


class _Voice(_Worker):
    """Runs the voice-activity model over the 16 kHz PCM of its own pipe.

    At the caller's priority, like the loudness: at a lower one, on a busy machine, the model
    fell behind and the pass waited for it at the end (the 10-minute film on the 2-core VM under
    a load of ~10: 55 s against 49 s, medians of 3, measured once while choosing). Its pipe holds
    32 s of audio (`PIPE_BYTES`), so a burst of other work can delay it without stalling the
    decode. After a failure the pipe is still drained, so ffmpeg never blocks on it.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.model: VoiceActivity | None = None

    def work(self) -> None:
        try:
            self.model = VoiceActivity()
        except BaseException as exc:
            self.error = exc
        for pcm in _pcm_chunks(self.fd):
            if self.error is None and self.model is not None:
                try:
                    self.model.feed(pcm)
                except BaseException as exc:
                    self.error = exc

    def per_frame(self, frames: int, fps: Fraction) -> np.ndarray:
        assert self.model is not None
        return self.model.per_frame(frames, fps)


class _SubjectFinder(_Worker):
    """Looks for subjects on sampled frames beside the frame reader (OpenCV releases the GIL).

    The queue is bounded (32 samples: 16 s at the default 2 per second, about 2 MB at 256 px), so
    the finder can lag behind a burst of whole-frame searches while its low priority lets the
    decode go first, and a detector slower than the video slows reading (back-pressure) instead of
    piling up frames in memory. The face plane of each sample is read from its own pipe in the
    same order.
    """

    def __init__(
        self, tracker: SubjectTracker | None, planes: "_Records | None", plane_size: tuple[int, int], nice: int = 0
    ) -> None:
        super().__init__(nice)
        self.tracker, self.planes, self.plane_size = tracker, planes, plane_size
        self.jobs: queue.Queue[tuple[int, np.ndarray, np.ndarray | None, bool] | None] = queue.Queue(maxsize=32)
        self.found: dict[int, Subject] = {}
        self.cancelled = threading.Event()  # the pass stopped early: drain the queue, search no more

    def work(self) -> None:
        # After a failure the queue is still drained, so the frame reader never blocks on it. Each
        # plane is read before its job is awaited: ffmpeg may write a sample's plane before its
        # small frame, and must never wait on this pipe while the frame reader waits on stdout.
        while True:
            plane = self._plane()
            if (job := self.jobs.get()) is None:
                return
            if self.error is None and self.tracker is not None and not self.cancelled.is_set():
                index, gray, previous, new_shot = job
                try:
                    self.found[index] = self.tracker.locate(gray, previous, new_shot, plane)
                except BaseException as exc:
                    self.error = exc

    def offer(self, job: tuple[int, np.ndarray, np.ndarray | None, bool]) -> None:
        """Queue a sample, waiting for room unless the pass is cancelled (then it is dropped)."""
        _put_unless(self.jobs, job, self.cancelled)

    def _plane(self) -> np.ndarray | None:
        if self.planes is None:
            return None
        data = self.planes.get()
        if data is None:
            self.planes = None  # the pipe ended: no more planes (and no more waiting for one)
            return None
        width, height = self.plane_size
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


class _FrameReader(_Worker):
    """Reads the frame pipe and measures each frame: luma, scene change, motion, thumbnails.

    Every `sample_every`-th frame goes to the subject finder, with whether the picture may have cut
    since the previous sample.
    """

    def __init__(
        self,
        pipe: _Records,
        size: tuple[int, int],
        finder: _SubjectFinder,
        sample_every: int,
        nice: int,
        on_progress: Callable[[float], None] | None,
        expected_frames: int,
    ) -> None:
        super().__init__(nice)
        self.pipe, self.size, self.finder, self.sample_every = pipe, size, finder, sample_every
        self.on_progress, self.expected = on_progress, max(1, expected_frames)
        self.rows: dict[str, list] = {name: [] for name in ("luma", "scene_score", "motion", "signature", "chroma")}
        self.count = 0

    def work(self) -> None:
        width, height = self.size
        rows = self.rows
        prev_hsv: np.ndarray | None = None
        prev_gray: np.ndarray | None = None
        changed = True  # a possible cut since the last subject sample
        while (frame := self.pipe.get()) is not None and not self.finder.cancelled.is_set():
            yuv = np.frombuffer(frame, dtype=np.uint8).reshape(height * 3 // 2, width)
            gray = cv2.LUT(yuv[:height], _FULL_RANGE)
            hsv = cv2.cvtColor(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420), cv2.COLOR_RGB2HSV_FULL)
            if prev_hsv is None or prev_gray is None:
                scene, motion = 0.0, 0.0
            else:
                # ContentDetector's measure: mean |ΔH|, |ΔS|, |ΔV| averaged, on a 0-255 scale. One L1
                # norm over the three channels is the same number, at an eighth of absdiff-then-mean.
                scene = cv2.norm(hsv, prev_hsv, cv2.NORM_L1) / hsv.size
                motion = cv2.norm(gray, prev_gray, cv2.NORM_L1) / gray.size
            rows["luma"].append(float(cv2.mean(gray)[0]))
            rows["scene_score"].append(scene)
            rows["motion"].append(motion)
            rows["signature"].append(
                cv2.resize(gray, (SIGNATURE_SIDE, SIGNATURE_SIDE), interpolation=cv2.INTER_AREA).tobytes()
            )
            # The U plane above the V plane, each half the frame's size: shrunk together, the top
            # half of the thumbnail is U and the bottom half V.
            planes = yuv[height:].reshape(height, width // 2)
            rows["chroma"].append(
                cv2.resize(planes, (CHROMA_SIDE, 2 * CHROMA_SIDE), interpolation=cv2.INTER_AREA).tobytes()
            )
            changed = changed or scene > NEW_SHOT_SCORE
            if self.count % self.sample_every == 0:
                self.finder.offer((self.count, gray, prev_gray, changed))
                changed = False
            prev_hsv, prev_gray = hsv, gray
            self.count += 1
            if self.on_progress and self.count % 50 == 0:
                self.on_progress(min(1.0, self.count / self.expected))


def _yield_to_decoder(nice: int) -> None:
    """Lower the calling thread's priority by `nice` (Linux keeps a nice value per thread).

    ffmpeg's decode is the pass's floor and leaves part of a core idle; Python's per-frame and
    subject work at a lower priority fills that idle time instead of slowing the decode. Threads
    started from here inherit the value (OpenCV's pool, if it starts here); ffmpeg does not: it is
    started from the caller's thread.
    """
    if nice > 0 and sys.platform == "linux":
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))


def face_plane_size(info: MediaInfo, settings: AnalysisSettings) -> tuple[int, int]:
    """The face search's picture: `face_width` wide (never wider than the source), the source's shape."""
    return analysis_size(info, settings.model_copy(update={"width": settings.face_width}))


def _command(
    info: MediaInfo,
    settings: AnalysisSettings,
    audio_fd: int | None,
    plane_fd: int | None,
    sample_every: int,
    voice_fd: int | None = None,
    loudness_fd: int | None = None,
) -> list[str]:
    width, height = analysis_size(info, settings)
    plane_w, plane_h = face_plane_size(info, settings)
    small = f"scale={width}:{height}:flags=fast_bilinear,format=yuv420p[v]"
    graph = f"[0:v:0]fps={info.fps_fraction},{small}"
    outputs = ["-map", "[v]", *RAW_OUTPUT, "pipe:1"]
    if plane_fd is not None:  # no face plane when no subject is looked for (`AnalysisSettings.subjects`)
        graph = (
            f"[0:v:0]fps={info.fps_fraction},split=2[all][faces];[all]{small};"
            # Only the sampled frames, in BGR for the face detector (sent as YUV 4:2:0 and converted
            # only where searched, a 1/15-height face on one bench path was found on 8 samples of 17
            # instead of 16: colour at half resolution, at the detector's limit). passthrough keeps
            # ffmpeg from duplicating frames to fill the gaps `select` leaves.
            f"[faces]select='not(mod(n,{sample_every}))',scale={plane_w}:{plane_h}:flags=bilinear,format=bgr24[p]"
        )
        outputs += ["-map", "[p]", "-fps_mode", "passthrough", *RAW_OUTPUT, f"pipe:{plane_fd}"]
    if audio_fd is not None:
        mono = "aformat=sample_fmts=s16:channel_layouts=mono"
        source = "[0:a:0]"
        if loudness_fd is not None:
            source = "[audio]"
            stereo = "aformat=sample_fmts=dbl:channel_layouts=stereo"
            # The render's audio (48 kHz stereo from sample 0), then K-weighted beside itself.
            graph += (
                f";[0:a:0]asplit=2[audio][r0];[r0]aresample={loudness.RATE}:async=1:first_pts=0,"
                f"{stereo},asplit=2[r1][r2];"
                f"[r2]{loudness.k_weighting_filters()},{stereo}[rk];[r1][rk]amerge=inputs=2,aformat=sample_fmts=flt[loud]"
            )
            outputs += ["-map", "[loud]", "-f", "f32le", f"pipe:{loudness_fd}"]
        if voice_fd is None:
            graph += f";{source}aresample={settings.audio_rate},{mono}[a]"
        elif settings.audio_rate == VOICE_RATE:  # one resampled branch, split for the model
            graph += f";{source}aresample={VOICE_RATE},{mono},asplit=2[a][v0];[v0]{VOICE_LEVELLER}[voice]"
        else:
            graph += (f";{source}asplit=2[a0][v0];[a0]aresample={settings.audio_rate},{mono}[a]"
                      f";[v0]aresample={VOICE_RATE},{mono},{VOICE_LEVELLER}[voice]")  # fmt: skip
        outputs += ["-map", "[a]", "-f", "s16le", f"pipe:{audio_fd}"]
        if voice_fd is not None:
            outputs += ["-map", "[voice]", "-f", "s16le", f"pipe:{voice_fd}"]
    decoder = (*ANALYSIS_DECODE_ARGS, "-threads", str(decoder_threads()))
    return [ffmpeg_io.FFMPEG, *ffmpeg_io.LOG_ARGS, *ffmpeg_io.input_args(info.path, decoder),
            *FILTER_THREADS, "-filter_complex", graph, *outputs]  # fmt: skip


def analyze(
    info: MediaInfo,
    settings: AnalysisSettings | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> pl.DataFrame:
    """Decode `info.path` once and return the per-frame analysis table (`ANALYSIS_SCHEMA`)."""
    settings = settings or AnalysisSettings()
    if not info.has_video:
        raise CorruptMedia(f"{Path(info.path).name}: no video stream to analyse")
    width, height = analysis_size(info, settings)
    fps = info.fps_exact
    scale_x, scale_y = info.width / width, info.height / height

    sample_every = max(1, round(float(fps) / settings.subject_fps))
    audio_read, audio_write = os.pipe() if info.has_audio else (None, None)
    plane_read, plane_write = os.pipe() if settings.subjects else (None, None)
    voice_read, voice_write = os.pipe() if info.has_audio and settings.voice else (None, None)
    loud_read, loud_write = os.pipe() if info.has_audio and settings.loudness else (None, None)
    for wide_pipe in (voice_write, loud_write):
        if wide_pipe is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(wide_pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    cmd = _command(info, settings, audio_write, plane_write, sample_every, voice_write, loud_write)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=tuple(fd for fd in (plane_write, audio_write, voice_write, loud_write) if fd is not None),
        **ffmpeg_io.CHILD,
    )  # fmt: skip
    planes: IO[bytes] | None = None
    if plane_write is not None and plane_read is not None:
        os.close(plane_write)
        planes = os.fdopen(plane_read, "rb")
        with contextlib.suppress(OSError):
            fcntl.fcntl(plane_read, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    assert proc.stdout is not None
    with contextlib.suppress(OSError):  # fewer wake-ups per frame; the default is 64 KiB
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    audio: _AudioLevels | None = None
    if audio_write is not None and audio_read is not None:
        os.close(audio_write)
        audio = _AudioLevels(audio_read, settings.audio_rate, fps)
        audio.start()
    loud: _Loudness | None = None
    if loud_write is not None and loud_read is not None:
        os.close(loud_write)
        loud = _Loudness(loud_read, fps)
        loud.start()
    voice: _Voice | None = None
    if voice_write is not None and voice_read is not None:
        os.close(voice_write)
        voice = _Voice(voice_read)
        voice.start()
    stderr_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()

    tracker = (
        SubjectTracker(
            max(1, round(settings.subject_fps / settings.face_search_fps)),
            max(1, round(settings.subject_fps / settings.people_search_fps)),
        )
        if settings.subjects
        else None  # the finder still drains its queue, and finds nothing
    )
    plane_size = face_plane_size(info, settings)
    plane_bytes, frame_bytes = plane_size[0] * plane_size[1] * 3, width * height * 3 // 2
    plane_records = None
    if planes is not None:
        plane_records = _Records(planes, plane_bytes, _queue_length(PLANES_QUEUED, PLANE_QUEUE_BYTES, plane_bytes))
        plane_records.start()
    frame_records = _Records(
        cast(IO[bytes], proc.stdout), frame_bytes, _queue_length(FRAMES_QUEUED, FRAME_QUEUE_BYTES, frame_bytes)
    )
    frame_records.start()
    finder = _SubjectFinder(tracker, plane_records, plane_size, settings.nice)
    finder.start()
    frames = _FrameReader(
        frame_records, (width, height), finder, sample_every, settings.nice, on_progress, info.frame_count
    )
    frames.start()
    completed = False
    try:
        frames.join()
        completed = True
    finally:
        if not completed or frames.error is not None:  # interrupted or failed: nothing more to read
            finder.cancelled.set()
            proc.kill()
            frame_records.stop.set()
            frames.finished.wait()
        proc.wait()
        frame_records.join()
        proc.stdout.close()
        drain.join()
        finder.jobs.put(None)
        finder.join()
        if plane_records is not None and planes is not None:
            plane_records.stop.set()
            plane_records.join()
            planes.close()
        for pcm_reader in (audio, voice, loud):
            if pcm_reader is not None:
                pcm_reader.join()
    if frames.error is not None:
        raise frames.error
    index, rows = frames.count, frames.rows
    stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
    if proc.returncode != 0 and index == 0:
        if err := ffmpeg_io.media_error_from_stderr(stderr, info.path):
            raise err
        raise FFmpegFailed(cmd, proc.returncode, stderr)
    if index == 0:
        raise CorruptMedia(f"{Path(info.path).name}: no video frame could be decoded")
    for worker in (audio, voice, loud, finder):
        if worker is not None and worker.error is not None:
            raise worker.error
    subjects = [finder.found.get(i) for i in range(index)]
    levels = audio.levels(index) if audio is not None else [None] * index
    speech = voice.per_frame(index, fps) if voice is not None else [None] * index
    k_power, true_peak = loud.per_frame(index) if loud is not None else ([None] * index, [None] * index)
    table = pl.DataFrame(
        {
            "frame": np.arange(index),
            "time": np.arange(index) * fps.denominator / fps.numerator,
            **rows,
            "subject_cx": [s.cx * scale_x if s else None for s in subjects],
            "subject_cy": [s.cy * scale_y if s else None for s in subjects],
            "subject_w": [s.w * scale_x if s else None for s in subjects],
            "subject_h": [s.h * scale_y if s else None for s in subjects],
            "subject_kind": [s.kind if s else None for s in subjects],
            "audio_db": levels,
            "speech_prob": speech,
            "k_power": k_power,
            "true_peak": true_peak,
        },
        schema=ANALYSIS_SCHEMA,
    )
    if on_progress:
        on_progress(1.0)
    return table
