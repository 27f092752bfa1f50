"""probe(): MediaInfo from ffprobe, typed errors for what cannot be edited."""

from pathlib import Path

import pytest

from autoedit_dagster.engine.config import InputLimits
from autoedit_dagster.engine.errors import CorruptMedia, MediaTooLarge, UnsafeMedia, UnsupportedMedia
from autoedit_dagster.engine.media_info import check_editable, probe
from testsupport.media_factory import ffmpeg


def test_probe_real_clip(bunny: Path) -> None:
    info = probe(bunny)
    assert (info.width, info.height, info.fps_fraction) == (1280, 720, "25/1")
    assert info.has_audio and info.has_video and not info.variable_frame_rate
    assert info.frame_count == 132
    assert 5.2 < info.duration < 5.4


def test_probe_ntsc_rate_without_audio(carphone: Path) -> None:
    info = probe(carphone)
    assert info.fps_fraction == "30000/1001" and not info.has_audio
    assert (info.width, info.height) == (176, 144)


def test_rotation_swaps_display_size(tmp_path: Path) -> None:
    landscape, clip = tmp_path / "landscape.mp4", tmp_path / "phone.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           str(landscape))  # fmt: skip
    # A phone stores landscape pixels plus a display matrix; a stream copy keeps the pixels.
    ffmpeg("-i", str(landscape), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(clip))
    info = probe(clip)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (180, 320)
    assert (info.coded_width, info.coded_height) == (320, 180)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", CorruptMedia),
        (b"just some text, not a video\n" * 10, CorruptMedia),
        (
            b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
            UnsafeMedia,
        ),
        (b"ffconcat version 1.0\nfile /etc/passwd\n", UnsafeMedia),
    ],
    ids=["empty", "text", "hls-playlist", "concat-script"],
)
def test_bad_files_are_typed_errors(tmp_path: Path, content: bytes, error: type) -> None:
    bad = tmp_path / "upload.mp4"
    bad.write_bytes(content)
    with pytest.raises(error, match=r"upload\.mp4"):
        probe(bad)


def test_truncated_mp4_is_corrupt(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x180:r=25:d=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        str(whole),
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # moov is at the end: lost
    with pytest.raises(CorruptMedia, match="truncated"):
        probe(cut)


def test_audio_only_probes_but_is_not_editable(tmp_path: Path) -> None:
    clip = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(clip))
    info = probe(clip)
    assert info.has_audio and not info.has_video
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        check_editable(info)


def test_limits_refuse_before_decoding(bunny: Path) -> None:
    with pytest.raises(MediaTooLarge, match="bytes"):
        probe(bunny, InputLimits(max_file_bytes=1000))
    info = probe(bunny)
    with pytest.raises(MediaTooLarge, match="limit"):
        check_editable(info, InputLimits(max_duration_s=2))
    with pytest.raises(MediaTooLarge, match="1280x720"):
        check_editable(info, InputLimits(max_width=640, max_height=640))
