"""`make demo`: edit the sample videos and a generated talk clip with `autoedit edit`.

Results land in demo_out/ (git-ignored); the script prints a table and the render paths.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = ROOT.parent / "shared" / "media"
OUT = ROOT / "demo_out"

PHRASES = [
    "Welcome to auto edit tate.",
    "This clip has long pauses between sentences.",
    "The editor cuts the dead air out automatically.",
    "And reframes the picture to a vertical video.",
]


def run(*args: str) -> None:
    subprocess.run(args, check=True)


def talk_clip(path: Path) -> Path:
    """Speech from espeak-ng with 0.5-3 s pauses, over a test picture."""
    if path.exists():
        return path
    parts: list[str] = []
    for i, text in enumerate(PHRASES):
        wav = OUT / f".phrase{i}.wav"
        run("espeak-ng", "-s", "160", "-w", str(wav), text)
        parts.append(str(wav))
    inputs: list[str] = []
    graph = ""
    pauses = [1.5, 0.5, 3.0, 1.0]
    for i, (wav, pause) in enumerate(zip(parts, pauses, strict=True)):
        inputs += ["-i", wav]
        graph += f"[{i}:a]aresample=48000,apad=pad_dur={pause}[a{i}];"
    graph += "".join(f"[a{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[speech];"
    graph += "anoisesrc=a=0.002:r=48000[noise];[speech][noise]amix=inputs=2:duration=first:normalize=0[a]"
    run("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs,
        "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25",
        "-filter_complex", graph, "-map", f"{len(parts)}:v", "-map", "[a]", "-shortest",
        "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(path))  # fmt: skip
    for wav in parts:
        Path(wav).unlink()
    return path


def main() -> int:
    OUT.mkdir(exist_ok=True)
    sources = [p for p in (SHARED_MEDIA / "bigbuckbunny.mp4", SHARED_MEDIA / "carphone_pristine.mp4") if p.exists()]
    sources.append(talk_clip(OUT / "talk.mp4"))
    rows = []
    for src in sources:
        for profile in ("tate", "yoko") if src.stem == "talk" else ("tate",):
            out = OUT / f"{src.stem}.{profile}.mp4"
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "autoedit_dagster.cli", "edit", str(src), "-o", str(out),
                 "--profile", profile, "--export", "fcpxml,fcp7,edl,otio,json",
                 "--timeline-png", str(out.with_suffix(".png"))],
                capture_output=True, text=True,
            )  # fmt: skip
            status = "ok" if proc.returncode == 0 else f"FAILED ({proc.stderr.strip()})"
            summary = proc.stdout.splitlines()[0] if proc.stdout else ""
            rows.append((src.name, profile, f"{time.perf_counter() - started:.1f}s", status, summary))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'source':<{width}}  profile  time   status  result")
    for name, profile, secs, status, summary in rows:
        print(f"{name:<{width}}  {profile:<7}  {secs:>5}  {status}  {summary}")
    print(f"\nRenders, exports and timeline PNGs are in {OUT}/")
    return 0 if all(r[3] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
