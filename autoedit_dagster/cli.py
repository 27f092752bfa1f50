"""`autoedit`: the engine from the command line.

    autoedit probe IN [--json]
    autoedit analyze IN --json
    autoedit edit IN -o OUT.mp4|.mov|.mkv [--profile tate|square|yoko]
                  [--export fcpxml,fcp7,edl,otio,json] [--timeline-png PATH.png]
        the cut:    [--cut-on voice|loudness] [--margin S | --margin BEFORE,AFTER]
                    [--threshold DB] [--min-silence S] [--cut-background-voices] [--no-cut]
        the output: [--resolution WxH | --height N] [--no-upscale] [--fps N] [--crf N] [--preset NAME]
    autoedit submit | status | fetch | backfill ...   (remote, over Dagster's GraphQL API)
    autoedit gateway --upstream URL | autoedit token --role viewer|operator
    autoedit --version

`edit`'s flags are `EditSettings` fields (engine/config.py, where their defaults are written): a
flag left out keeps the default. Every path and value is checked before any work: a bad one is
one line on stderr, exit 2, nothing written. Warnings (a small source enlarged many times, a
loudness target not met) go to stderr as `autoedit: warning: ...` and do not change the exit status.

Exit status: 0 on success, 2 on bad input (one line on stderr, no traceback), 1 on an internal
error. Environment: AUTOEDIT_FFMPEG / AUTOEDIT_FFPROBE name other ffmpeg binaries.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .engine.errors import BadRequest, MediaError
from .engine.ffmpeg_io import ProbeRun
from .names import (
    DEFAULT_PROFILE,
    EXPORT_SUFFIXES,
    OUTPUT_CONTAINERS,
    PROFILE_NAMES,
    REFRAMED_PROFILES,
    X264_PRESETS,
)

if TYPE_CHECKING:  # imported by `_edit_settings` once the source's ffprobe runs
    from .engine.config import EditSettings

# The engine commands import only the standard library before starting their ffprobe: the engine
# (pydantic models, numpy, OpenCV, polars) is imported while ffprobe reads the file.

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


class _ProgressBar:
    """A one-line progress bar on a TTY; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = ""

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        filled = int(fraction * 30)
        line = f"\r{stage:>8} [{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}%"
        if line != self.last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self.last = line

    def warn(self, message: str) -> None:
        """A warning on its own line (below the bar, which goes on on the next line)."""
        if self.enabled and self.last:
            sys.stderr.write("\n")
            self.last = ""
        print(f"autoedit: warning: {message}", file=sys.stderr)

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\n")


def _cmd_probe(args: argparse.Namespace) -> int:
    started = ProbeRun(args.input)
    from .engine.config import EditSettings
    from .engine.media_info import probe

    info = probe(args.input, EditSettings().limits, started)
    if args.json:
        print(info.model_dump_json(indent=2))
        return 0
    video = (
        f"{info.video_codec} {info.width}x{info.height} @ {info.fps:.3f} fps"
        + (" (variable)" if info.variable_frame_rate else "")
        + (f", rotated {info.rotation}°" if info.rotation else "")
        if info.has_video
        else "none"
    )
    audio = f"{info.audio_codec} {info.audio_channels} ch @ {info.audio_sample_rate} Hz" if info.has_audio else "none"
    print(f"{info.path}\n  container {info.container}, {info.duration:.3f} s, {info.size_bytes} bytes")
    print(f"  video     {video}\n  audio     {audio}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    started = ProbeRun(args.input)
    from .engine.config import get_profile
    from .engine.pipeline import analysis_summary, analyze_source, plan_crop, probe_source

    bar = _ProgressBar(sys.stderr.isatty())
    source = analyze_source(args.input, on_progress=bar, info=probe_source(args.input, started=started))
    bar.close()
    summary = analysis_summary(source, plan_crop(source.frames, source.info, source.shots, get_profile(args.profile)))
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['duration']:.2f} s at {summary['fps']:.3f} fps: {len(summary['shots'])} shot boundaries, "
            f"{len(summary['speech'])} kept ranges"
        )
    return 0


def _check_paths(source: Path, named: str, png: Path | None) -> None:
    """What `edit` would write (`named` by -o) is refused here, before any work: one line each (`BadRequest`)."""
    output = Path(named)
    if output.is_dir() or named.endswith(("/", os.sep)):
        raise BadRequest(f"-o {output}: is a folder; name the video to write in it, e.g. {output / 'edit.mp4'}")
    if output.suffix.lower() not in OUTPUT_CONTAINERS:
        raise BadRequest(
            f"-o {output.name}: {output.suffix or 'no extension'} is not a video container autoedit writes; "
            f"end the name with {', '.join(OUTPUT_CONTAINERS)}"
        )
    if output.resolve() == source.resolve():
        raise BadRequest(f"{output}: output would overwrite the input; choose another -o")
    _check_writable_folder("-o", output, create=True)
    if png is not None:
        if png.is_dir():
            raise BadRequest(f"--timeline-png {png}: is a folder; name the picture, e.g. {png / 'timeline.png'}")
        if png.suffix.lower() != ".png":
            raise BadRequest(f"--timeline-png {png.name}: the timeline picture is a PNG; end the name with .png")
        _check_writable_folder("--timeline-png", png, create=False)


def _check_writable_folder(flag: str, path: Path, create: bool) -> None:
    """`path`'s folder exists (or, with `create`, can be made) and can be written in."""
    folder = path.resolve().parent
    if not create and not folder.is_dir():
        raise BadRequest(f"{flag} {path}: folder {folder} does not exist")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise BadRequest(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadRequest(f"{flag} {path}: cannot write in {existing}")


def _margin(text: str) -> tuple[float, float]:
    """`--margin SECONDS` (both sides) or `--margin BEFORE,AFTER`."""
    parts = text.split(",")
    try:
        if len(parts) in (1, 2):
            values = [float(p) for p in parts]
            return values[0], values[-1]
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected SECONDS or BEFORE,AFTER (e.g. 0.2 or 0.1,0.3), got {text!r}")


def _resolution(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 720x1280), got {text!r}")
    return int(found.group(1)), int(found.group(2))


# EditSettings fields -> the flag that sets them, for errors that name what the person typed.
_FLAG_OF = {
    "detector": "--cut-on", "threshold_db": "--threshold", "margin_before_s": "--margin",
    "margin_after_s": "--margin", "min_silence_s": "--min-silence", "width": "--resolution",
    "height": "--height", "fps": "--fps", "crf": "--crf", "preset": "--preset",
}  # fmt: skip
_CUT_FLAGS = {
    "cut_on": "--cut-on", "threshold": "--threshold", "margin": "--margin", "min_silence": "--min-silence",
    "cut_background_voices": "--cut-background-voices",
}  # fmt: skip


def _edit_settings(args: argparse.Namespace) -> "EditSettings":
    """The `EditSettings` the flags ask for (defaults for the rest); `BadRequest` naming the flag."""
    from pydantic import ValidationError

    from .engine.config import EditSettings

    given = [flag for name, flag in _CUT_FLAGS.items() if getattr(args, name) not in (None, False)]
    if args.no_cut and given:
        raise BadRequest(f"--no-cut keeps every frame: {', '.join(given)} would do nothing")
    if args.threshold is not None and args.cut_on == "voice":
        raise BadRequest("--threshold is the loudness detector's level (dB above the noise floor); drop --cut-on voice")
    if args.cut_background_voices and (args.cut_on == "loudness" or args.threshold is not None):
        raise BadRequest("--cut-background-voices is the voice detector's; the loudness detector keeps every voice")
    silence: dict[str, Any] = {"cut": False} if args.no_cut else {}
    if args.cut_background_voices:
        silence["cut_background_voice"] = True
    if args.cut_on or args.threshold is not None:
        silence["detector"] = args.cut_on or "loudness"
    if args.threshold is not None:
        silence["threshold_db"] = args.threshold
    if args.margin is not None:
        silence["margin_before_s"], silence["margin_after_s"] = args.margin
    if args.min_silence is not None:
        silence["min_silence_s"] = args.min_silence
    output: dict[str, Any] = {"upscale": False} if args.no_upscale else {}
    if args.resolution:
        output["width"], output["height"] = args.resolution
    if args.height is not None:
        output["height"] = args.height
    if args.fps is not None:
        output["fps"] = args.fps
    encode = {name: getattr(args, name) for name in ("crf", "preset") if getattr(args, name) is not None}
    try:
        return EditSettings.model_validate({"silence": silence, "output": output, "encode": encode})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][-1])
        flag = "--resolution" if field == "height" and args.resolution else _FLAG_OF.get(field, field)
        text = error["msg"].removeprefix("Value error, ")
        message = text[0].lower() + text[1:]
        value = "x".join(map(str, args.resolution)) if flag == "--resolution" else error["input"]
        raise BadRequest(f"{flag} {value}: {message}") from None


def _cmd_edit(args: argparse.Namespace) -> int:
    source, output = Path(args.input), Path(args.output)
    png = Path(args.timeline_png) if args.timeline_png is not None else None
    exports = [x.strip() for x in args.export.split(",") if x.strip()] if args.export else []
    unknown = sorted(set(exports) - set(EXPORT_SUFFIXES))
    if unknown:
        raise BadRequest(f"unknown export {', '.join(unknown)}; choose from {','.join(EXPORT_SUFFIXES)}")
    _check_paths(source, args.output, png)
    started = ProbeRun(source)
    try:
        settings = _edit_settings(args)
    except BaseException:
        started.cancel()
        raise
    from .engine.edit import edit

    bar = _ProgressBar(sys.stderr.isatty())
    result = edit(
        source,
        output,
        args.profile,
        settings,
        exports=exports,
        timeline_png_path=png,
        on_progress=bar,
        started_probe=started,
        on_warning=bar.warn,
    )
    bar.close()
    print(
        f"{result.output}: {result.output_duration:.2f} s of {result.source_duration:.2f} s kept "
        f"({result.kept_ranges} ranges, {result.shots} shots, profile {result.profile})"
    )
    if settings.silence.cut:
        found = "speech" if result.speech.detector == "voice" else "sound"
        print(f"  cut on {result.speech.detector}: {result.speech.speech_s:.2f} s of {found} found")
    for note in result.speech.notes:
        print(f"  {note}")
    for fmt, path in result.exports.items():
        print(f"  {fmt}: {path}")
    if result.timeline_png:
        print(f"  timeline: {result.timeline_png}")
    return 0


ENGINE_COMMANDS = ("probe", "analyze", "edit")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, exit 2, rather than the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("autoedit_dagster")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"autoedit {found}")
        parser.exit()


def _defaults_shown(shown: bool) -> Any:
    """`edit`'s defaults for its help, read from `EditSettings` (written there once); when `shown`
    is False (no help asked for), nothing is imported and each one reads as empty."""
    if not shown:
        return lambda _value: ""
    from .engine.config import EditSettings, get_profile

    settings, profile = EditSettings(), get_profile()
    values = {
        "margin": f"{settings.silence.margin_before_s:g}",
        "threshold": f"{settings.silence.threshold_db:g}",
        "min_silence": f"{settings.silence.min_silence_s:g}",
        "crf": f"{profile.crf}",
        "preset": profile.preset,
    }
    return lambda name: f" (default {values[name]})"


def build_parser(remote: bool = True, help_defaults: bool = False) -> argparse.ArgumentParser:
    """The whole command; `remote=False` leaves out the remote and gateway commands (and Dagster).

    `help_defaults`: `edit --help` shows the defaults (this imports the engine's settings).
    """
    default = _defaults_shown(help_defaults)
    parser = _Parser(prog="autoedit", description="Automatic video editing: cut dead air, reframe.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe", help="describe a media file")
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print MediaInfo as JSON")
    p.set_defaults(run=_cmd_probe)

    a = sub.add_parser("analyze", help="one decode pass: shots, speech, crop path")
    a.add_argument("input")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.add_argument("--profile", default=DEFAULT_PROFILE, choices=REFRAMED_PROFILES)
    a.set_defaults(run=_cmd_analyze)

    e = sub.add_parser(
        "edit",
        help="cut, reframe, normalise and render",
        description="Cut dead air, reframe to the profile, normalise loudness and render. Flags left out keep "
        "the defaults of `EditSettings` (engine/config.py).",
    )
    e.add_argument("input")
    e.add_argument(
        "-o", "--output", required=True, help="the video to write: .mp4, .mov or .mkv (the container follows)"
    )
    e.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    e.add_argument("--export", default="", help="comma list of fcpxml,fcp7,edl,otio,json (beside the output)")
    e.add_argument("--timeline-png", default=None, metavar="PATH", help="draw the edit's timeline to PATH (.png)")
    cut = e.add_argument_group("the cut")
    cut.add_argument(
        "--cut-on",
        default=None,
        choices=["voice", "loudness"],
        help="keep what a voice model hears as speech (the default), or what is louder than the noise floor",
    )
    cut.add_argument(
        "--margin", type=_margin, metavar="S|BEFORE,AFTER", help="seconds kept around what is kept" + default("margin")
    )
    cut.add_argument(
        "--threshold",
        type=float,
        metavar="DB",
        help="loud means this many dB above the noise floor" + default("threshold") + "; implies --cut-on loudness",
    )
    cut.add_argument(
        "--min-silence", type=float, metavar="S", help="seconds: shorter silences are not cut" + default("min_silence")
    )
    cut.add_argument(
        "--cut-background-voices",
        action="store_true",
        help="cut a voice far under the speaker that talks through its pauses (chatter, sung lyrics) like a "
        "pause; may also cut a quieter partner answering in short turns over a noisy room or chatter",
    )
    cut.add_argument("--no-cut", action="store_true", help="keep every frame: reframe and normalise only")
    out = e.add_argument_group("the output")
    size = out.add_mutually_exclusive_group()
    size.add_argument(
        "--resolution",
        type=_resolution,
        metavar="WxH",
        help="output size, of the profile's aspect (yoko: the source's shape)",
    )
    size.add_argument("--height", type=int, metavar="N", help="output height; the width keeps the aspect")
    out.add_argument(
        "--no-upscale",
        action="store_true",
        help="never enlarge a small source: the output is at most the source pixels it shows",
    )
    out.add_argument("--fps", type=float, metavar="N", help="output frame rate (default: the source's)")
    out.add_argument("--crf", type=int, metavar="N", help="x264 quality, 0-51, lower is better" + default("crf"))
    out.add_argument("--preset", choices=X264_PRESETS, help="x264 speed" + default("preset"))
    e.set_defaults(run=_cmd_edit)

    if not remote:
        return parser
    # Remote commands (GraphQL client) and the gateway import Dagster's client libraries: ~90 MB
    # that an `edit` would otherwise hold for the whole render, beside ffmpeg.
    from .gateway.commands import add_gateway_commands
    from .remote.commands import add_remote_commands

    add_remote_commands(sub)
    add_gateway_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)
    # `--version` needs no remote command (nor Dagster's client libraries that they import).
    remote = command not in ENGINE_COMMANDS and words[:1] != ["--version"]
    help_asked = command == "edit" and ("-h" in words or "--help" in words)
    args = build_parser(remote=remote, help_defaults=help_asked).parse_args(argv)
    try:
        return args.run(args)
    except MediaError as exc:
        print(f"autoedit: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("autoedit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for people; the type says where to look
        print(f"autoedit: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
