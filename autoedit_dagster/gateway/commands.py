"""`autoedit gateway` and `autoedit token`: the argparse wiring, added to cli.py's subparsers.

    autoedit gateway --upstream URL [--host H] [--port P] [--log-level L] [--log-format json|text]
    autoedit token (--role viewer|operator | --scope metrics) [--subject NAME] [--ttl SECONDS]

`token` prints only the token on stdout (`TOKEN=$(autoedit token --role viewer)`), and its
subject and expiry on stderr. `--scope metrics` mints a token that may read `/metrics` and
nothing else (for Prometheus). Both commands refuse, in one line with exit status 2, a missing
AUTOEDIT_JWT_SECRET or one shorter than 32 bytes. Without --subject the subject is `<role>-<8 hex>`, so every token
minted gets a rate-limit bucket of its own. Environment: AUTOEDIT_JWT_SECRET (both commands), and
the gateway's variables (`settings.ENVIRONMENT`), which `autoedit gateway --help` lists. Also runnable as
`python -m autoedit_dagster.gateway.commands ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import uuid
from datetime import UTC, datetime

from .settings import ENVIRONMENT
from .tokens import DEFAULT_TTL_SECONDS, ROLES, SCOPES, ConfigurationError, check_secret, mint_token

EXIT_BAD_INPUT = 2


def _error(message: str) -> int:
    print(f"autoedit: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_gateway(args: argparse.Namespace) -> int:
    from .app import Gateway
    from .logs import configure_logging
    from .settings import GatewaySettings

    try:
        configure_logging(args.log_level, args.log_format)
        gateway = Gateway(GatewaySettings.from_env(args.upstream))
    except (ConfigurationError, ValueError) as exc:
        return _error(str(exc))
    import uvicorn

    # Our own access log (without query strings: /login?token=...) replaces uvicorn's. Forwarded
    # headers are read by the gateway itself, from AUTOEDIT_TRUSTED_PROXIES only.
    uvicorn.run(
        gateway, host=args.host, port=args.port, log_config=None, access_log=False, proxy_headers=False,
        ws="websockets-sansio", lifespan="on", server_header=False, log_level=args.log_level,
    )  # fmt: skip
    return 0


def run_token(args: argparse.Namespace) -> int:
    try:
        secret = check_secret(os.environ.get("AUTOEDIT_JWT_SECRET"))
    except ConfigurationError as exc:
        return _error(f"{exc} (the gateway must have the same value)")
    if args.ttl <= 0:
        return _error("--ttl must be a positive number of seconds")
    kind = args.role or f"{args.scope}-scoped"
    subject = args.subject or f"{args.role or args.scope}-{uuid.uuid4().hex[:8]}"
    scopes = (args.scope,) if args.scope else ()
    token = mint_token(secret, args.role, subject=subject, ttl=args.ttl, scopes=scopes)
    expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + args.ttl, UTC).isoformat(timespec="seconds")
    print(token)
    print(f"autoedit: {kind} token for {subject}, expires {expires}", file=sys.stderr)
    return 0


def environment_help() -> str:
    """The environment `autoedit gateway` reads, for its --help (from `settings.ENVIRONMENT`)."""
    lines = ["environment:"]
    for name, meaning in ENVIRONMENT:
        lines += [f"  {name}", *textwrap.wrap(meaning, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)]
    secret = "$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    lines += ["", "example:", f"  export AUTOEDIT_JWT_SECRET={secret}",
              "  autoedit gateway --upstream http://127.0.0.1:3000 --host 0.0.0.0 --port 8080"]  # fmt: skip
    return "\n".join(lines)


def add_gateway_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `gateway` and `token` to an `add_subparsers()` result; each sets `run` to its handler."""
    g = subparsers.add_parser(
        "gateway", help="JWT + rate-limit gateway (and /metrics, /review) in front of dagster-webserver",
        description="Serve the auth, role and rate-limit gateway in front of dagster-webserver, and the "
        "review pages (/review) and Prometheus metrics (/metrics).",
        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    g.add_argument("--upstream", required=True, help="dagster-webserver base URL, e.g. http://127.0.0.1:3000")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    g.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    g.add_argument("--log-format", default=None, choices=["json", "text"],
                   help="default: AUTOEDIT_LOG_FORMAT, else json")  # fmt: skip
    g.set_defaults(run=run_gateway)

    t = subparsers.add_parser(
        "token", help="print a gateway token signed with AUTOEDIT_JWT_SECRET",
        description="Mint an HS256 token for the gateway; clients send it as `Authorization: Bearer <token>`.",
    )  # fmt: skip
    who = t.add_mutually_exclusive_group(required=True)
    who.add_argument("--role", choices=ROLES, help="viewer: read-only; operator: everything")
    who.add_argument("--scope", choices=SCOPES, help="metrics: /metrics only (for Prometheus)")
    t.add_argument("--subject", default=None, help="who the token is for (its rate-limit bucket)")
    t.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS,
                   help=f"seconds until it expires (default {DEFAULT_TTL_SECONDS})")  # fmt: skip
    t.set_defaults(run=run_token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autoedit", description="AutoEditTATE gateway commands.")
    add_gateway_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
