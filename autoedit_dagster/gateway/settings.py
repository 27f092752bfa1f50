"""The gateway's settings, read from the environment once at start (`GatewaySettings.from_env`)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .tokens import ConfigurationError, check_secret, read_public_key

if TYPE_CHECKING:  # graphql-core loads with the gateway, not with every `autoedit` command's parser
    from .graphql_check import GraphQLLimits

DEFAULT_RATE_LIMIT = 100
DEFAULT_MAX_UPLOAD_MB = 4096
WINDOW_SECONDS = 60

# Every variable the gateway reads, with what it means: `autoedit gateway --help` lists them.
ENVIRONMENT = (
    ("AUTOEDIT_JWT_SECRET", "HS256 key tokens are signed with, at least 32 bytes (required unless "
     "AUTOEDIT_JWT_PUBLIC_KEY is set; `autoedit token` needs it)"),
    ("AUTOEDIT_JWT_PUBLIC_KEY", "PEM public key (or a path to one) to verify RS256 tokens minted elsewhere"),
    ("AUTOEDIT_REDIS_URL", "Redis for the shared rate limit (default redis://127.0.0.1:6379/0)"),
    ("AUTOEDIT_RATE_LIMIT", f"requests per client per {WINDOW_SECONDS} s (default {DEFAULT_RATE_LIMIT}; 0: off)"),
    ("AUTOEDIT_METRICS_AUTH", "who may read /metrics: token (a metrics-scoped or any role's token, default) "
     "or operator"),
    ("AUTOEDIT_TRUSTED_PROXIES", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For "
     "and X-Forwarded-Proto are believed (default none)"),
    ("AUTOEDIT_COOKIE_SECURE", "1 to always set the login cookie's Secure flag (it is set over https anyway)"),
    ("AUTOEDIT_UPSTREAM_TIMEOUT", "seconds to wait for the webserver (default 120)"),
    ("AUTOEDIT_MAX_UPLOAD_MB", f"the largest upload POST /uploads takes, in MB (default {DEFAULT_MAX_UPLOAD_MB})"),
    ("AUTOEDIT_LOG_FORMAT", "json (default) or text, unless --log-format says"),
    ("DAGSTER_HOME", "the Dagster instance /metrics and the review page's check results read"),
    ("AUTOEDIT_STORAGE", "the store /review and /media read, /uploads writes and decisions are recorded in (a "
     "folder or s3://bucket/prefix, with AWS_ENDPOINT_URL and the AWS_* credentials)"),
    ("AUTOEDIT_WEBHOOK_URLS, AUTOEDIT_WEBHOOK_SECRET, AUTOEDIT_WEBHOOK_EVENTS",
     "where an approval on /review queues render.approved (as the code location's)"),
)  # fmt: skip


def _default_limits() -> GraphQLLimits:
    from .graphql_check import GraphQLLimits

    return GraphQLLimits()


@dataclass(frozen=True)
class GatewaySettings:
    upstream: str
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit: int = DEFAULT_RATE_LIMIT
    window_seconds: int = WINDOW_SECONDS
    dagster_home: str | None = None
    metrics_auth: str = "token"
    cookie_secure: bool = False
    upstream_timeout: float = 120.0
    key_prefix: str = "autoedit:ratelimit:"
    trusted_proxies: tuple[str, ...] = ()
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    graphql_limits: GraphQLLimits = field(default_factory=_default_limits)

    def __post_init__(self) -> None:
        if self.jwt_secret is not None:
            check_secret(self.jwt_secret)
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigurationError(
                    f"AUTOEDIT_TRUSTED_PROXIES must list IP addresses or CIDR networks, not {proxy!r}"
                ) from exc
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"--upstream must be an http(s) URL such as http://127.0.0.1:3000, not {self.upstream!r}"
            )
        if self.rate_limit < 0 or self.window_seconds <= 0:
            raise ConfigurationError("AUTOEDIT_RATE_LIMIT must be 0 (off) or a positive number of requests per minute")
        if self.max_upload_bytes <= 0:
            raise ConfigurationError("AUTOEDIT_MAX_UPLOAD_MB must be a positive number of megabytes")
        if self.metrics_auth not in ("token", "operator"):
            raise ConfigurationError(
                f"AUTOEDIT_METRICS_AUTH must be token (a metrics-scoped or any role's token) or operator, not "
                f"{self.metrics_auth!r}: /metrics is never public"
            )

    @classmethod
    def from_env(cls, upstream: str, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        try:
            rate_limit = int(env.get("AUTOEDIT_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
            timeout = float(env.get("AUTOEDIT_UPSTREAM_TIMEOUT") or 120)
            max_upload_mb = float(env.get("AUTOEDIT_MAX_UPLOAD_MB") or DEFAULT_MAX_UPLOAD_MB)
        except ValueError as exc:
            raise ConfigurationError(
                f"AUTOEDIT_RATE_LIMIT / AUTOEDIT_UPSTREAM_TIMEOUT / AUTOEDIT_MAX_UPLOAD_MB must be numbers: {exc}"
            ) from exc
        public_key = env.get("AUTOEDIT_JWT_PUBLIC_KEY")
        proxies = tuple(p.strip() for p in (env.get("AUTOEDIT_TRUSTED_PROXIES") or "").split(",") if p.strip())
        return cls(
            upstream=upstream,
            jwt_secret=env.get("AUTOEDIT_JWT_SECRET") or None,
            jwt_public_key=read_public_key(public_key) if public_key else None,
            redis_url=env.get("AUTOEDIT_REDIS_URL") or cls.redis_url,
            rate_limit=rate_limit,
            dagster_home=env.get("DAGSTER_HOME") or None,
            metrics_auth=(env.get("AUTOEDIT_METRICS_AUTH") or "token").lower(),
            cookie_secure=(env.get("AUTOEDIT_COOKIE_SECURE") or "").lower() in ("1", "true", "yes"),
            upstream_timeout=timeout,
            trusted_proxies=proxies,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        )
