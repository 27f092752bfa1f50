"""`autoedit`: the engine from the command line.

    autoedit probe IN [--json]
    autoedit analyze IN --json
    autoedit edit IN -o OUT [--profile tate|square|yoko] [--export fcpxml,fcp7,edl,otio,json]
                            [--timeline-png PATH] [--cut-on voice|loudness]
    autoedit submit | status | fetch | backfill ...   (remote, over Dagster's GraphQL API)
    autoedit gateway --upstream URL | autoedit token --role viewer|operator

Exit status: 0 on success, 2 on bad input (one line on stderr, no traceback), 1 on an internal
error. Environment: AUTOEDIT_FFMPEG / AUTOEDIT_FFPROBE name other ffmpeg binaries.
"""

import argparse
import json
import sys
from pathlib import Path

from .engine.errors import MediaError
from .engine.ffmpeg_io import ProbeRun
from .names import DEFAULT_PROFILE, EXPORT_SUFFIXES, PROFILE_NAMES, REFRAMED_PROFILES

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


def _cmd_edit(args: argparse.Namespace) -> int:
    source, output = Path(args.input), Path(args.output)
    if output.resolve() == source.resolve():
        raise MediaError(f"{output}: output would overwrite the input; choose another -o")
    exports = [x.strip() for x in args.export.split(",") if x.strip()] if args.export else []
    if exports:
        unknown = sorted(set(exports) - set(EXPORT_SUFFIXES))
        if unknown:
            print(
                f"autoedit: error: unknown export {', '.join(unknown)}; choose from {','.join(EXPORT_SUFFIXES)}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    started = ProbeRun(source)
    from .engine.config import EditSettings, SilenceSettings
    from .engine.edit import edit

    settings = EditSettings(silence=SilenceSettings(detector=args.cut_on)) if args.cut_on else EditSettings()
    bar = _ProgressBar(sys.stderr.isatty())
    result = edit(
        source,
        output,
        args.profile,
        settings,
        exports=exports,
        timeline_png_path=args.timeline_png,
        on_progress=bar,
        started_probe=started,
    )
    bar.close()
    print(
        f"{result.output}: {result.output_duration:.2f} s of {result.source_duration:.2f} s kept "
        f"({result.kept_ranges} ranges, {result.shots} shots, profile {result.profile})"
    )
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


def build_parser(remote: bool = True) -> argparse.ArgumentParser:
    """The whole command; `remote=False` leaves out the remote and gateway commands (and Dagster)."""
    parser = argparse.ArgumentParser(prog="autoedit", description="Automatic video editing: cut dead air, reframe.")
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

    e = sub.add_parser("edit", help="cut, reframe, normalise and render")
    e.add_argument("input")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    e.add_argument("--export", default="", help="comma list of fcpxml,fcp7,edl,otio,json")
    e.add_argument("--timeline-png", default=None, metavar="PATH")
    e.add_argument(
        "--cut-on",
        default=None,
        choices=["voice", "loudness"],
        help="keep what a voice model hears as speech (the default: `SilenceSettings.detector`), or what is "
        "louder than the noise floor",
    )
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
    args = build_parser(remote=command not in ENGINE_COMMANDS).parse_args(argv)
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
