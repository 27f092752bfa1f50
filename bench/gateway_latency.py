"""`python -m bench.gateway_latency`: status-query latency through the gateway and directly; writes bench/GATEWAY.md.

One video is rendered in-process (`video_job`, a 2 s lavfi clip) on a temporary instance and
storage (deploy/dagster.local.yaml), then dagster-webserver and `autoedit gateway` in front of it
start on free loopback ports (`testsupport/servers.py`). Two GraphQL documents of `autoedit status`
(`autoedit_dagster/remote/client.py`) are timed: `AutoeditRuns` (a video's latest runs; also what
`submit --wait` polls) and `AutoeditVideoAssets` (every asset's state for the video). Each is
posted by 1, 10 and 50 concurrent clients (httpx async, keep-alive, a bounded number of requests
per level), to the webserver directly and through the gateway, in alternating rounds so that the
load of a busy machine falls on both sides alike. The gateway does all its per-request work:
JWT check, a viewer's GraphQL parse for mutations, and the Redis rate-limit script; its limit is
set far above the load (AUTOEDIT_RATE_LIMIT=1000000) so that no request is refused.

Environment: BENCH_REDIS_URL (default redis://127.0.0.1:6379/9; keys expire after a minute),
BENCH_GATEWAY_REQUESTS (requests per client level and side, at least 5 per client; default 200),
BENCH_GATEWAY_ROUNDS (alternations per level; default 2).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from autoedit_dagster.gateway.tokens import mint_token
from autoedit_dagster.remote.queries import RUNS, video_assets_query
from testsupport.servers import JWT_SECRET, Instance, Servers

HERE = Path(__file__).resolve().parent
REPORT = HERE / "GATEWAY.md"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "200"))
ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "2"))
CLIENTS = (1, 10, 50)
TARGET_MS = 200.0  # the seed's target for a status query
UPLOAD = "uploads/bench-gateway.mp4"


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    errors: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p95(self) -> float:
        return self.quantile(0.95)


async def measure(url: str, body: dict, headers: dict[str, str], clients: int, count: int, out: Samples) -> None:
    """`count` POSTs of `body` from `clients` concurrent clients; each latency (or error) into `out`."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False, headers=headers) as http:

        async def one_client(n: int) -> None:
            for _ in range(n):
                started = time.perf_counter()
                try:
                    response = await http.post(f"{url}/graphql", json=body)
                    ok = response.status_code == 200 and "errors" not in response.json()
                except httpx.HTTPError:
                    ok = False
                if ok:
                    out.seconds.append(time.perf_counter() - started)
                else:
                    out.errors += 1

        # Warm the connections (not counted), then the timed requests, split evenly over the clients.
        await asyncio.gather(*(http.post(f"{url}/graphql", json=body) for _ in range(clients)))
        share, extra = divmod(count, clients)
        await asyncio.gather(*(one_client(share + (i < extra)) for i in range(clients)))


def run_levels(direct: str, gateway: str, token: str, queries: dict[str, dict]) -> dict[tuple[str, int, str], Samples]:
    results: dict[tuple[str, int, str], Samples] = {}
    for name, body in queries.items():
        for clients in CLIENTS:
            count = max(REQUESTS, 5 * clients) // ROUNDS
            for _ in range(ROUNDS):
                for side, url, headers in (("direct", direct, {}), ("gateway", gateway, bearer(token))):
                    samples = results.setdefault((name, clients, side), Samples())
                    asyncio.run(measure(url, body, headers, clients, count, samples))
            d, g = results[(name, clients, "direct")], results[(name, clients, "gateway")]
            print(f"{name:>12} x{clients:<3} direct p50 {d.p50:7.1f} p95 {d.p95:7.1f} ms | "
                  f"gateway p50 {g.p50:7.1f} p95 {g.p95:7.1f} ms", file=sys.stderr)  # fmt: skip
    return results


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_report(results: dict[tuple[str, int, str], Samples], load: tuple[float, float], elapsed: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Gateway latency",
        "",
        f"Measured by `python -m bench.gateway_latency` ({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"{when}, in {elapsed:.0f} s; load average {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "dagster-webserver on a temporary SQLite instance holding one rendered video, and `autoedit gateway` "
        "in front of it, both on loopback. Each cell is the latency of one GraphQL POST as the client sees it "
        f"(p50 / p95, ms), over *n* requests per side, directly and through the gateway in "
        f"{ROUNDS} alternating rounds. The gateway verifies a viewer JWT, parses the document for mutations and "
        "runs the Redis rate-limit script on every request. *Added* is gateway p50 - direct p50; the ratios are "
        "gateway / direct.",
        "",
        "| query | clients | direct p50 | direct p95 | gateway p50 | gateway p95 | added p50 | ratio p50 | "
        "ratio p95 | n | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    misses = []
    for name, clients, side in results:
        if side != "direct":
            continue
        d, g = results[(name, clients, "direct")], results[(name, clients, "gateway")]
        lines.append(
            f"| `{name}` | {clients} | {d.p50:.1f} | {d.p95:.1f} | {g.p50:.1f} | {g.p95:.1f} | "
            f"{g.p50 - d.p50:+.1f} | **{g.p50 / d.p50:.2f}x** | {g.p95 / d.p95:.2f}x | {len(d.seconds)} | "
            f"{d.errors + g.errors} |"
        )
        if g.p95 > TARGET_MS:
            misses.append(f"`{name}` at {clients} client{'s' if clients > 1 else ''} ({g.p95:.0f} ms)")
    lines += [
        "",
        f"Target: a status query under {TARGET_MS:.0f} ms. Through the gateway the p95 is "
        + (f"over it for {', '.join(misses)}." if misses else "under it at every level measured."),
        "",
        "Loopback on one small machine: the webserver, the gateway, Redis and the clients share the same "
        "cores, so at 10 and 50 clients the numbers measure queueing on the CPU as much as either server; "
        "the ratio at 1 client is the gateway's own cost.",
        "",
    ]
    REPORT.write_text("\n".join(lines))
    return "\n".join(lines)


def main() -> None:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        instance = Instance.create(Path(tmp))
        video_id = instance.render_video(UPLOAD)
        queries = {
            "AutoeditRuns": {
                "query": RUNS,
                "variables": {"filter": {"tags": [{"key": "dagster/partition", "value": video_id}]}, "limit": 5},
            },
            "AutoeditVideoAssets": {"query": video_assets_query([video_id]), "variables": {"partitions": [video_id]}},
        }
        with Servers(instance) as servers:
            webserver = servers.start_webserver()
            gateway = servers.start_gateway(webserver.url, REDIS_URL, rate_limit=1_000_000)
            servers.wait_webserver(webserver)
            servers.wait_gateway(gateway)
            token = mint_token(JWT_SECRET, "viewer", subject="bench-gateway", ttl=3600)
            results = run_levels(webserver.url, gateway.url, token, queries)
    print(write_report(results, (load_before, os.getloadavg()[0]), time.monotonic() - started))


if __name__ == "__main__":
    main()
