"""Subscriptions are validated (http/https, no credentials, a real secret) and signatures verify."""

import logging
import time

import pytest
from pydantic import ValidationError

from autoedit_dagster.webhooks.settings import WebhookSettings, redacted
from autoedit_dagster.webhooks.signing import signature_header, verify_signature
from testsupport.webhook_receiver import verify as readme_verify

SECRET = "webhook-test-secret-" + "0123456789abcdef" * 2


def env(**values: str) -> dict[str, str]:
    return {"AUTOEDIT_WEBHOOK_SECRET": SECRET, **values}


def test_urls_and_secret_come_from_the_environment() -> None:
    settings = WebhookSettings.from_env(
        env(
            AUTOEDIT_WEBHOOK_URLS=" https://a.example/h , http://127.0.0.1:9/x", AUTOEDIT_WEBHOOK_EVENTS="render.failed"
        )
    )
    assert settings.urls == ("https://a.example/h", "http://127.0.0.1:9/x")
    assert settings.subscribers_for("render.failed") == settings.urls
    assert settings.subscribers_for("render.succeeded") == ()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://a.example/h", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("/relative/path", "http or https"),
        ("https://user:pw@a.example/h", "credentials"),
        ("https:///nohost", "host"),
    ],
)
def test_bad_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        WebhookSettings.from_env(env(AUTOEDIT_WEBHOOK_URLS=url))


def test_a_secret_is_required_and_never_defaulted() -> None:
    with pytest.raises(ValidationError, match="AUTOEDIT_WEBHOOK_SECRET is required"):
        WebhookSettings.from_env({"AUTOEDIT_WEBHOOK_URLS": "https://a.example/h"})
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        WebhookSettings.from_env({"AUTOEDIT_WEBHOOK_URLS": "https://a.example/h", "AUTOEDIT_WEBHOOK_SECRET": "short"})
    with pytest.raises(ValidationError, match="unknown webhook events"):
        WebhookSettings.from_env(env(AUTOEDIT_WEBHOOK_URLS="https://a.example/h", AUTOEDIT_WEBHOOK_EVENTS="render.x"))
    assert not WebhookSettings.from_env({}).enabled


def test_logs_show_only_the_origin() -> None:
    assert redacted("https://hooks.example:8443/services/T000/B000/XXXXSECRET") == "https://hooks.example:8443/…"


def test_backoff_doubles_and_spans_over_an_hour() -> None:
    settings = WebhookSettings()
    delays = [settings.retry_delay(n) for n in range(1, settings.max_attempts)]
    assert delays[:3] == [30.0, 60.0, 120.0]
    assert sum(delays) >= 3600


def test_signatures_verify_with_the_documented_snippet() -> None:
    body = b'{"id":"evt_1","type":"render.succeeded"}'
    now = int(time.time())
    header = signature_header(SECRET.encode(), now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET.encode(), header, body, now)
    assert readme_verify(SECRET.encode(), header, body)
    assert not readme_verify(SECRET.encode(), header, body + b" ")
    assert not readme_verify(b"another secret" * 3, header, body)
    stale = signature_header(SECRET.encode(), now - 3600, body)
    assert not verify_signature(SECRET.encode(), stale, body, now)
    assert not readme_verify(SECRET.encode(), stale, body)
    assert not verify_signature(SECRET.encode(), "garbage", body, now)


def test_settings_never_log_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        settings = WebhookSettings.from_env(env(AUTOEDIT_WEBHOOK_URLS="https://a.example/h"))
        logging.getLogger("t").info("settings: %s %r", settings, settings)
    assert SECRET not in caplog.text
