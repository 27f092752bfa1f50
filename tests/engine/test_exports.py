"""Editor exports: each format is written, read back through OpenTimelineIO and compared."""

import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import opentimelineio as otio
import pytest

from autoedit_dagster.engine import exports, tempfiles
from autoedit_dagster.engine.timeline import CropKey, FrameRange, Timeline
from autoedit_dagster.names import EXPORT_SUFFIXES

OTIO_FORMATS = ["fcpxml", "fcp7", "edl", "otio"]
RATES = ["25/1", "30000/1001", "24/1"]


def make_ranges(count: int, seed: int = 7) -> list[FrameRange]:
    """`count` kept ranges with gaps between them, some a single frame long."""
    rng = np.random.default_rng(seed)
    ranges, at = [], int(rng.integers(0, 20))
    for i in range(count):
        length = 1 if i % 7 == 3 else int(rng.integers(2, 200))
        ranges.append(FrameRange(start=at, end=at + length))
        at += length + int(rng.integers(1, 60))
    return ranges


def make_timeline(
    ranges: list[FrameRange], fps: str = "25/1", source: str = "/media/in/talk.mp4", has_audio: bool = True
) -> Timeline:
    frame_count = ranges[-1].end + 25
    return Timeline(
        source=source,
        profile="tate",
        fps=fps,
        frame_count=frame_count,
        source_width=1920,
        source_height=1080,
        has_audio=has_audio,
        output_width=1080,
        output_height=1920,
        crop_width=608,
        crop_height=1080,
        ranges=ranges,
        crop=[CropKey(frame=0, x=656, y=0), CropKey(frame=frame_count // 2, x=900, y=0)],
    )


def read_back(path: Path, fps: str) -> Any:
    """Read an export back through OTIO (EDLs carry no rate: pass the timeline's `fps`)."""
    kwargs: dict[str, Any] = {}
    if str(path).endswith(EXPORT_SUFFIXES["edl"]):
        kwargs["rate"] = float(Fraction(fps))
    if str(path).endswith(EXPORT_SUFFIXES["fcp7"]):
        kwargs["adapter_name"] = exports.OTIO_ADAPTERS["fcp7"]
    if str(path).endswith(EXPORT_SUFFIXES["otio"]):
        kwargs["adapter_name"] = exports.OTIO_ADAPTERS["otio"]
    return otio.adapters.read_from_file(str(path), **kwargs)


def read_timeline(path: Path, fps: str) -> otio.schema.Timeline:
    result = read_back(path, fps)
    if isinstance(result, otio.schema.SerializableCollection):
        (result,) = list(result)
    assert isinstance(result, otio.schema.Timeline)
    return result


def video_clips(tree: otio.schema.Timeline) -> list[otio.schema.Clip]:
    (track,) = [t for t in tree.tracks if t.kind == otio.schema.TrackKind.Video]
    return list(track.find_clips())


@pytest.mark.parametrize("fps", RATES)
@pytest.mark.parametrize("count", [1, 50])
@pytest.mark.parametrize("fmt", OTIO_FORMATS)
def test_round_trip_keeps_clips_and_durations(tmp_path: Path, fmt: str, count: int, fps: str) -> None:
    timeline = make_timeline(make_ranges(count), fps)
    path = exports.write_export(timeline, fmt, tmp_path / f"edit{EXPORT_SUFFIXES[fmt]}")
    clips = video_clips(read_timeline(path, fps))

    assert len(clips) == count
    rate = float(Fraction(fps))
    for clip, kept in zip(clips, timeline.ranges, strict=True):
        # The FCPXML reader truncates seconds*fps (57.99999 -> 57) and reads 29.97 as 29 fps,
        # so each clip may come back a frame of *its* rate short; the file itself is exact (below).
        frame = 1 / clip.source_range.duration.rate + 1e-9
        assert clip.source_range.duration.to_seconds() == pytest.approx(kept.frames / rate, abs=frame)
        assert clip.source_range.start_time.to_seconds() == pytest.approx(kept.start / rate, abs=frame)
    total = sum(c.source_range.duration.to_seconds() for c in clips)
    tolerance = count / 29 if fmt == "fcpxml" else 1 / rate
    assert total == pytest.approx(timeline.output_duration, abs=tolerance)


@pytest.mark.parametrize("fps", RATES)
def test_fcpxml_times_are_exact_frames(tmp_path: Path, fps: str) -> None:
    """The written FCPXML is frame-exact even where its reader is not (29.97 read back as 29)."""
    timeline = make_timeline(make_ranges(50), fps)
    root = ET.parse(exports.write_export(timeline, "fcpxml", tmp_path / "edit.fcpxml")).getroot()
    (fmt,) = root.findall("./resources/format")
    frame = Fraction(fmt.get("frameDuration", "")[:-1])
    assert frame == 1 / Fraction(fps)
    spine = root.find("./project/sequence/spine")
    assert spine is not None
    clips = spine.findall("./clip")
    assert len(clips) == 50

    def seconds(text: str | None) -> Fraction:
        return Fraction(text[:-1]) if text and text != "0s" else Fraction(0)

    position = Fraction(0)
    for clip, kept in zip(clips, timeline.ranges, strict=True):
        assert seconds(clip.get("offset")) == position
        assert seconds(clip.get("start")) == kept.start * frame
        assert seconds(clip.get("duration")) == kept.frames * frame
        (audio,) = clip.findall("./clip[@lane='-1']")  # the audio track, hung under its video clip
        assert seconds(audio.get("offset")) == kept.start * frame
        assert seconds(audio.get("duration")) == kept.frames * frame
        position += kept.frames * frame
    sequence = root.find("./project/sequence")
    assert sequence is not None and seconds(sequence.get("duration")) == timeline.output_frames * frame
    # One browser clip for the one source (the adapter alone adds one per cut).
    assert len(root.findall("./asset-clip")) == 1


def test_fcpxml_export_never_runs_ffprobe(tmp_path: Path, bunny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing FCPXML never probes the source with a bare ffprobe (which has no input limits)."""
    module = otio.adapters.from_name("fcpx_xml").module()

    def refuse(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("the FCPXML export ran a subprocess")

    monkeypatch.setattr(module.subprocess, "check_output", refuse)
    timeline = make_timeline(make_ranges(3), "25/1", source=str(bunny)).model_copy(
        update={"source_width": 1280, "source_height": 720}
    )
    text = exports.write_export(timeline, "fcpxml", tmp_path / "edit.fcpxml").read_text()
    assert 'name="FFVideoFormat720p25"' in text
    assert bunny.resolve().as_uri() in text


@pytest.mark.parametrize("has_audio", [True, False])
@pytest.mark.parametrize("fmt", ["fcpxml", "fcp7", "otio"])
def test_audio_track_follows_the_source(tmp_path: Path, fmt: str, has_audio: bool) -> None:
    timeline = make_timeline(make_ranges(4), has_audio=has_audio)
    tree = read_timeline(exports.write_export(timeline, fmt, tmp_path / f"e{EXPORT_SUFFIXES[fmt]}"), "25")
    audio = [t for t in tree.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert len(audio) == (1 if has_audio else 0)
    if has_audio:
        assert [c.source_range for c in audio[0].find_clips()] == [c.source_range for c in video_clips(tree)]


def test_edl_at_2997_is_drop_frame_with_a_reel(tmp_path: Path) -> None:
    timeline = make_timeline([FrameRange(start=0, end=1800), FrameRange(start=2000, end=2100)], "30000/1001")
    text = exports.write_export(timeline, "edl", tmp_path / "edit.edl").read_text()
    events = [line for line in text.splitlines() if line[:3].isdigit()]
    assert len(events) == 2
    # 1800 frames at 29.97 drop-frame is 00:01:00;02 (frames 00 and 01 of minute 1 are skipped).
    assert events[0].split()[1:] == [
        "TALK",
        "V",
        "C",
        "00:00:00;00",
        "00:01:00;02",
        "00:00:00;00",
        "00:01:00;02",
    ]


def test_otio_json_carries_the_crop_path(tmp_path: Path) -> None:
    timeline = make_timeline(make_ranges(3))
    tree = read_timeline(exports.write_export(timeline, "otio", tmp_path / "e.otio.json"), timeline.fps)
    meta = tree.metadata["autoedit"]
    assert meta["profile"] == "tate" and meta["fps"] == "25/1"
    assert list(meta["crop_size"]) == [608, 1080]
    assert [dict(k) for k in meta["crop"]] == [k.model_dump() for k in timeline.crop]
    first = video_clips(tree)[0].metadata["autoedit"]
    assert list(first["source_frames"]) == [timeline.ranges[0].start, timeline.ranges[0].end]
    assert dict(first["crop"][0]) == {"frame": timeline.ranges[0].start, "x": 656, "y": 0}


def test_json_is_the_timeline_itself(tmp_path: Path) -> None:
    timeline = make_timeline(make_ranges(5), "30000/1001")
    path = exports.write_export(timeline, "json", tmp_path / "e.timeline.json")
    assert Timeline.model_validate_json(path.read_text()) == timeline


def test_unicode_and_spaces_in_paths(tmp_path: Path) -> None:
    source = str(tmp_path / "rushes 2024" / "Interview d'été ✂ 1.mov")
    timeline = make_timeline(make_ranges(6), "30000/1001", source=source)
    stem = tmp_path / "exports à vérifier" / "mon montage ✂"
    written = exports.export_all(timeline, list(EXPORT_SUFFIXES), stem)
    assert set(written) == set(EXPORT_SUFFIXES)
    for fmt, path in written.items():
        assert path == stem.with_name(stem.name + EXPORT_SUFFIXES[fmt]) and path.is_file()
        if fmt == "json":
            continue
        clips = video_clips(read_timeline(path, timeline.fps))
        assert len(clips) == 6
        if fmt != "edl":  # an EDL names its source only in comments
            url = clips[0].media_reference.target_url
            assert url == Path(source).as_uri()
            assert otio.url_utils.filepath_from_url(url) == source
    edl = written["edl"].read_text()
    assert edl.splitlines()[0] == "TITLE: Interview dete 1 tate" and " INTERVIE V " in edl


def test_unknown_format_lists_valid_ones(tmp_path: Path) -> None:
    timeline = make_timeline(make_ranges(2))
    with pytest.raises(ValueError, match="fcpxml, fcp7, edl, otio, json"):
        exports.write_export(timeline, "aaf", tmp_path / "e.aaf")
    with pytest.raises(ValueError, match="aaf"):
        exports.export_all(timeline, ["edl", "aaf"], tmp_path / "e")
    assert list(tmp_path.iterdir()) == []  # nothing half-done before the format was refused


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timeline = make_timeline(make_ranges(3))
    written = exports.export_all(timeline, list(EXPORT_SUFFIXES), tmp_path / "edit")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written.values())

    before = written["edl"].read_bytes()

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(tempfiles.os, "replace", crash)  # the writer `write_export` uses
    longer = make_timeline(make_ranges(9))
    with pytest.raises(OSError, match="disk gone"):
        exports.write_export(longer, "edl", written["edl"])
    assert written["edl"].read_bytes() == before  # the old export is intact...
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written.values())  # ...no temp


def test_empty_timeline_is_refused_for_edl(tmp_path: Path) -> None:
    timeline = make_timeline(make_ranges(1)).model_copy(update={"ranges": []})
    with pytest.raises(ValueError, match="keeps nothing"):
        exports.write_export(timeline, "edl", tmp_path / "e.edl")
