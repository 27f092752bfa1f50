"""Editor exports of a `Timeline`: FCPXML, FCP 7 XML, CMX3600 EDL and OpenTimelineIO JSON.

Every editor format is produced by OpenTimelineIO and its adapter plugins from one OTIO timeline
(`to_otio`); nothing here writes FCPXML, XML or EDL text by hand. What the adapters need, found by
reading them (otio-fcpx-xml-adapter, otio-fcp-adapter, otio-cmx3600-adapter 1.0):

- every clip's media reference needs an `available_range` (FCPXML asset durations, FCP 7 `<file>`
  durations) and the timeline a `global_start_time` (FCP 7 sequence timecode);
- CMX3600 takes the reel from `metadata["cmx_3600"]["reel"]`, else from the file name with only
  `[ A-Za-z0-9]` kept: a non-ASCII name gives an empty reel and a space inside one splits the
  event line, so the reel is set here. Only the first (video) track is written: an EDL of this
  adapter has no audio events. 29.97 fps is written as drop-frame timecode (`;`), without an
  `FCM:` line, and an EDL carries no rate: read it back with `rate=float(fps)`;
- the FCPXML writer (fcpx_xml 1.0) misses frame durations for exact NTSC rates, names the format
  by running ffprobe on the source, truncates times to `int(fps)` frames when it hangs audio
  clips under video clips (a crash at 29.97) and adds a browser clip per cut; `_fcpx_writer`
  fixes these in a subclass. Its XPath lookups by `[@name='...']`/`[@src='...']` break on a
  `'`: clip names have it replaced and URLs are percent-encoded. All clips are named after the
  source file, so FCP shows one browser clip;
- the FCPXML reader rounds rates down to whole numbers (29.97 reads back as 29 fps), so times
  read back at NTSC rates are off by up to a frame; the written file is exact.

Times are `RationalTime(frame, float(fps))`: an exact frame count at the exact rate, which the
XML writers turn back into exact fractions (`1001/30000s` steps at 29.97).

The crop path of a reframed profile has no equivalent in these formats; it travels in the
metadata under `autoedit` (timeline and clips), which the OTIO JSON keeps in full.
"""

import functools
import re
import unicodedata
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from autoedit_dagster.names import EXPORT_SUFFIXES

from .tempfiles import write_atomic
from .timeline import Timeline

OTIO_ADAPTERS = {"fcpxml": "fcpx_xml", "fcp7": "fcp_xml", "edl": "cmx_3600", "otio": "otio_json"}


def _target_url(source: str) -> str:
    """A URL for the source: `file:///...` (percent-encoded) for local paths, URIs unchanged."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source):
        return source.replace("'", "%27")
    return Path(source).resolve().as_uri()


def _source_name(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1] or "source"
    return name.replace("'", "\u2019")


def _reel(source: str, length: int = 8) -> str:
    """A CMX3600 reel: up to 8 ASCII letters/digits of the file's stem, `AX` (auxiliary) if none."""
    stem = Path(_source_name(source)).stem
    reel = re.sub(r"[^A-Za-z0-9]", "", stem).upper()[:length]
    return reel or "AX"


def _crop_metadata(timeline: Timeline, start: int | None = None, end: int | None = None) -> list[dict]:
    """Crop keys as plain dicts; with a range, the keys inside it plus the one in force at its start."""
    if start is None or end is None:
        return [key.model_dump() for key in timeline.crop]
    keys: list[dict] = []
    at_start = timeline.crop_at(start)
    if at_start is not None:
        keys.append({"frame": start, "x": at_start[0], "y": at_start[1]})
    keys += [key.model_dump() for key in timeline.crop if start < key.frame < end]
    return keys


def to_otio(timeline: Timeline) -> otio.schema.Timeline:
    """The edit as an OTIO timeline: one video track (and one audio track) of clips of the source."""
    rate = float(timeline.fps_exact)
    name = _source_name(timeline.source)
    url = _target_url(timeline.source)
    available = otio.opentime.TimeRange(
        otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(timeline.frame_count, rate)
    )
    result = otio.schema.Timeline(name=f"{Path(name).stem} {timeline.profile}")
    # The FCP 7 writer reads the sequence start from here; 0 keeps record times equal in all formats.
    result.global_start_time = otio.opentime.RationalTime(0, rate)
    result.metadata["autoedit"] = {
        "source": timeline.source,
        "profile": timeline.profile,
        "fps": timeline.fps,
        "frame_count": timeline.frame_count,
        "source_size": [timeline.source_width, timeline.source_height],
        "output_size": [timeline.output_width, timeline.output_height],
        "crop_size": None if timeline.crop_width is None else [timeline.crop_width, timeline.crop_height],
        "crop": _crop_metadata(timeline),
        "has_audio": timeline.has_audio,
    }
    kinds = [otio.schema.TrackKind.Video] + ([otio.schema.TrackKind.Audio] if timeline.has_audio else [])
    for kind in kinds:
        track = otio.schema.Track(name="V1" if kind == otio.schema.TrackKind.Video else "A1", kind=kind)
        for index, kept in enumerate(timeline.ranges):
            # One reference per clip: OTIO objects have a single parent, and writers may edit them.
            reference = otio.schema.ExternalReference(target_url=url, available_range=available)
            reference.name = name
            clip = otio.schema.Clip(
                name=name,
                media_reference=reference,
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(kept.start, rate),
                    otio.opentime.RationalTime(kept.frames, rate),
                ),
            )
            clip.metadata["cmx_3600"] = {"reel": _reel(timeline.source)}
            clip.metadata["autoedit"] = {"index": index, "source_frames": [kept.start, kept.end]}
            if kind == otio.schema.TrackKind.Video:
                # A moving crop has a key per change; it is told once, with the pictures.
                clip.metadata["autoedit"]["crop"] = _crop_metadata(timeline, kept.start, kept.end)
            track.append(clip)
        result.tracks.append(track)
    return result


def _fcp_rate_name(fps: Fraction) -> str:
    """The rate part of FCP's format names: 25 -> `25`, 30000/1001 -> `2997`, 24000/1001 -> `2398`."""
    if fps.denominator == 1:
        return str(fps.numerator)
    if fps.denominator == 1001:
        return str(round(float(fps) * 100))
    return ""


def _fcpx_format_name(timeline: Timeline) -> str:
    """FCP X's name for the source's format where one exists (`FFVideoFormat1080p25`), else ``."""
    sizes = {(1280, 720): "720p", (1920, 1080): "1080p", (3840, 2160): "2160p"}
    size = sizes.get((timeline.source_width, timeline.source_height))
    rate = _fcp_rate_name(timeline.fps_exact)
    return f"FFVideoFormat{size}{rate}" if size and rate else ""


def _seconds(text: str | None) -> Fraction:
    """An FCPXML time (`0s`, `6s`, `1001/300s`) as exact seconds."""
    return Fraction(text[:-1]) if text and text != "0s" else Fraction(0)


@functools.cache
def _fcpx_writer() -> type:
    """The FCPXML adapter's writer with its frame-rate and lookup bugs fixed (adapter 1.0).

    Subclassing keeps the adapter doing all the writing while leaving its module untouched for
    anyone else in the process. What is changed, and why:
    - `_framerate_to_frame_duration` looks the rate up by `int(rate)` then `float(rate)` in a
      table of nominal rates (`29.97`), so 30000/1001 and 24000/1001 got an empty frameDuration;
    - `_clip_format_name` ran a bare `ffprobe` on the source (outside `ffmpeg_io`'s restrictions)
      to name the format; the name now comes from the Timeline, so exporting needs no media;
    - `_find_parent_element`/`_offset_based_on_parent` attach audio-lane clips to their spine
      clip with times truncated to `int(fps)` frames (29 at 29.97): at NTSC rates a short clip
      found no parent and the writer crashed; they now compare exact fractions of a second;
    - `_asset_clip_by_name` returns an Element, which is falsy when childless, so the writer
      added one more browser `asset-clip` for every clip; it now answers found / not found.
    """
    module = otio.adapters.from_name("fcpx_xml").module()

    class ExactFcpxWriter(module.FcpxOtio):  # type: ignore[misc, name-defined]
        def __init__(self, tree: otio.schema.Timeline, fps: Fraction, format_name: str) -> None:
            super().__init__(tree)
            self.fps, self.rate, self.format_name = fps, float(fps), format_name

        def _framerate_to_frame_duration(self, framerate: float) -> str:
            if abs(framerate - self.rate) < 1e-9:
                return f"{self.fps.denominator}/{self.fps.numerator}s"
            return module.FcpxOtio._framerate_to_frame_duration(framerate)

        def _clip_format_name(self, clip: Any) -> str:
            return self.format_name

        def _asset_clip_by_name(self, name: str) -> bool:
            return self.event_resource.find(f"./asset-clip[@name='{name}']") is not None

        def _exact(self, seconds: Fraction) -> otio.opentime.RationalTime:
            return otio.opentime.RationalTime(round(seconds * self.fps), self.rate)

        def _find_parent_element(self, spine: Any, time: otio.opentime.RationalTime, _format_id: str) -> Any:
            at = Fraction(round(time.value_rescaled_to(self.rate))) / self.fps
            for item in spine.iter():
                if item.tag not in ("clip", "asset-clip", "gap", "ref-clip") or item.get("lane") is not None:
                    continue
                if item.tag == "gap" and item.find("./audio") is not None:
                    continue
                offset = _seconds(item.get("offset"))
                if offset <= at < offset + _seconds(item.get("duration")):
                    return item
            return None

        def _offset_based_on_parent(self, child: Any, parent: Any, _format_id: str) -> otio.opentime.RationalTime:
            inside = _seconds(child.get("offset")) - _seconds(parent.get("offset"))
            return self._exact(inside + _seconds(parent.get("start")))

    return ExactFcpxWriter


def _ascii(text: str) -> str:
    """`é` -> `e`; what has no ASCII form is dropped."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.split())


def export_text(timeline: Timeline, fmt: str) -> str:
    """The contents of one export format, as text."""
    if fmt not in EXPORT_SUFFIXES:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORT_SUFFIXES)}")
    if fmt == "json":
        return timeline.model_dump_json(indent=2)
    # Writers may change what they are given (the EDL writer edits clips), so each gets its own.
    tree = to_otio(timeline)
    if fmt == "fcpxml":
        return _fcpx_writer()(tree, timeline.fps_exact, _fcpx_format_name(timeline)).to_xml()
    if fmt == "edl":
        if not timeline.ranges:
            # The adapter indexes the track's last item; an event list of nothing is no use anyway.
            raise ValueError("an EDL needs at least one kept range; this timeline keeps nothing")
        # CMX3600 is an ASCII format: a non-ASCII title line is garbled or refused by editors.
        tree.name = _ascii(tree.name)
        return otio.adapters.write_to_string(tree, adapter_name=OTIO_ADAPTERS[fmt], rate=float(timeline.fps_exact))
    return otio.adapters.write_to_string(tree, adapter_name=OTIO_ADAPTERS[fmt])


def write_export(timeline: Timeline, fmt: str, path: Path) -> Path:
    """Write one export format of `timeline` to `path` (atomically); returns `path`."""
    return write_atomic(Path(path), export_text(timeline, fmt).encode("utf-8"))


def export_all(timeline: Timeline, formats: list[str], stem: Path) -> dict[str, Path]:
    """Write each of `formats` to `stem` + its suffix (`edit` -> `edit.fcpxml`, `edit.edl`, ...)."""
    unknown = [fmt for fmt in formats if fmt not in EXPORT_SUFFIXES]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; valid formats: {', '.join(EXPORT_SUFFIXES)}")
    stem = Path(stem)
    return {fmt: write_export(timeline, fmt, stem.with_name(stem.name + EXPORT_SUFFIXES[fmt])) for fmt in formats}
