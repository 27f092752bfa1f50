"""Who receives the completion webhooks, and how hard delivery tries.

Environment: `AUTOEDIT_WEBHOOK_URLS` (comma-separated http/https URLs), `AUTOEDIT_WEBHOOK_SECRET`
(required as soon as there is a URL, at least 32 bytes, never defaulted), `AUTOEDIT_WEBHOOK_EVENTS`
(optional comma-separated filter, default every event), `AUTOEDIT_WEBHOOK_BACKOFF_S` (the wait
before the first retry, default 30; it doubles each time, at most an hour apart, nine attempts
in all: about two hours). Without URLs nothing is queued or sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

RENDER_SUCCEEDED = "render.succeeded"
RENDER_FAILED = "render.failed"
UPLOAD_QUARANTINED = "upload.quarantined"
RENDER_APPROVED = "render.approved"
EVENT_TYPES = (RENDER_SUCCEEDED, RENDER_FAILED, UPLOAD_QUARANTINED, RENDER_APPROVED)

URLS_ENV = "AUTOEDIT_WEBHOOK_URLS"
SECRET_ENV = "AUTOEDIT_WEBHOOK_SECRET"
EVENTS_ENV = "AUTOEDIT_WEBHOOK_EVENTS"
BACKOFF_ENV = "AUTOEDIT_WEBHOOK_BACKOFF_S"
MIN_SECRET_BYTES = 32


def check_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL without credentials in it; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"webhook URLs must be http or https, not {parts.scheme or 'a relative URL'!r}")
    if not parts.hostname:
        raise ValueError("a webhook URL needs a host")
    # Credentials in the URL would travel into every record and log line that names it.
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook URLs must not carry credentials (user:password@); the signature authenticates")
    return url.strip()


def redacted(url: str) -> str:
    """What logs may show of a subscriber: scheme, host and port (paths often embed tokens)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


class WebhookSettings(BaseModel):
    """Validated subscriptions; the secret is a SecretStr so it never shows in a repr or a log."""

    model_config = ConfigDict(frozen=True)

    urls: tuple[str, ...] = ()
    secret: SecretStr | None = None
    events: frozenset[str] = frozenset(EVENT_TYPES)
    backoff_base_s: float = Field(default=30.0, gt=0, description="Wait before the first retry; doubles each time.")
    backoff_max_s: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=9, ge=1, description="Default: retries spread over about two hours.")
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_url(url) for url in urls)

    @field_validator("events")
    @classmethod
    def _events(cls, events: frozenset[str]) -> frozenset[str]:
        unknown = sorted(events - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown webhook events {unknown}; known: {list(EVENT_TYPES)}")
        return events

    @model_validator(mode="after")
    def _secret_required(self) -> WebhookSettings:
        if self.urls:
            if self.secret is None or not self.secret.get_secret_value():
                raise ValueError(f"{SECRET_ENV} is required when {URLS_ENV} is set")
            if len(self.secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def subscribers_for(self, event_type: str) -> tuple[str, ...]:
        return self.urls if event_type in self.events else ()

    def secret_bytes(self) -> bytes:
        assert self.secret is not None, "no secret: webhooks are disabled"
        return self.secret.get_secret_value().encode()

    def retry_delay(self, attempts_made: int) -> float:
        """Seconds to wait after the `attempts_made`-th failed attempt."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts_made - 1))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if environ is None else environ
        urls = tuple(u.strip() for u in env.get(URLS_ENV, "").split(",") if u.strip())
        events = frozenset(e.strip() for e in env.get(EVENTS_ENV, "").split(",") if e.strip()) or frozenset(EVENT_TYPES)
        secret = env.get(SECRET_ENV)
        backoff = float(env.get(BACKOFF_ENV) or 30.0)
        return cls(urls=urls, secret=SecretStr(secret) if secret else None, events=events, backoff_base_s=backoff)


class WebhookResource(dg.ConfigurableResource):
    """The subscriptions as a Dagster resource. The secret is given as `dg.EnvVar`, so the UI shows
    the variable's name, never its value."""

    urls: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=lambda: list(EVENT_TYPES))
    secret: str | None = None
    backoff_base_s: float = 30.0
    max_attempts: int = 9
    timeout_s: float = 10.0

    def __repr_args__(self) -> Any:
        # Tracebacks and test reports print resources: the secret must not be in them.
        return [(k, "**********" if k == "secret" and v else v) for k, v in super().__repr_args__()]

    def settings(self) -> WebhookSettings:
        return WebhookSettings(
            urls=tuple(self.urls),
            events=frozenset(self.events),
            secret=SecretStr(self.secret) if self.secret else None,
            backoff_base_s=self.backoff_base_s,
            max_attempts=self.max_attempts,
            timeout_s=self.timeout_s,
        )

    @classmethod
    def from_env(cls) -> WebhookResource:
        """Validated now (a bad URL or a missing secret stops the code location from loading)."""
        settings = WebhookSettings.from_env()
        return cls(
            urls=list(settings.urls),
            events=sorted(settings.events),
            backoff_base_s=settings.backoff_base_s,
            secret=dg.EnvVar(SECRET_ENV) if settings.secret is not None else None,  # type: ignore[arg-type]
        )
