"""Sending what the outbox holds: signed POSTs, exponential backoff, every attempt recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from ..resources import MediaStore
from .outbox import Attempt, Delivery, Outcome, pending, save
from .settings import WebhookSettings, redacted
from .signing import ATTEMPT_HEADER, EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_header

log = logging.getLogger("autoedit.webhooks")

# Called with each finished attempt: the sensor turns it into an observation (UI and /metrics).
AttemptListener = Callable[[Delivery, Attempt], None]


def _send(
    client: httpx.Client, settings: WebhookSettings, delivery: Delivery, number: int
) -> tuple[int | None, str | None]:
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "AutoEditTATE-Webhooks/1",
        SIGNATURE_HEADER: signature_header(settings.secret_bytes(), int(time.time()), body),
        IDEMPOTENCY_HEADER: delivery.event_id,
        EVENT_HEADER: delivery.event_type,
        ATTEMPT_HEADER: str(number),
    }
    try:
        response = client.post(delivery.url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return None, type(error).__name__  # the message may repeat the URL
    return response.status_code, None if response.is_success else f"HTTP {response.status_code}"


def attempt_delivery(
    client: httpx.Client, store: MediaStore, settings: WebhookSettings, delivery: Delivery, now: float
) -> Attempt:
    """One attempt, recorded in the delivery's record before returning."""
    number = len(delivery.attempts) + 1
    started = time.monotonic()
    # A subscriber taken out of AUTOEDIT_WEBHOOK_URLS gets nothing more, queued or not.
    subscribed = delivery.url in settings.urls
    status, error = _send(client, settings, delivery, number) if subscribed else (None, "no longer subscribed")
    outcome: Outcome
    if not subscribed:
        outcome, delivery.state = "gave_up", "gave_up"
    elif error is None:
        outcome, delivery.state = "delivered", "delivered"
    elif number >= settings.max_attempts:
        outcome, delivery.state = "gave_up", "gave_up"
    else:
        outcome = "retrying"
        delivery.next_attempt_at = now + settings.retry_delay(number)
    attempt = Attempt(
        number=number,
        at=datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        status_code=status,
        error=error,
        outcome=outcome,
        seconds=round(time.monotonic() - started, 4),
    )
    delivery.attempts.append(attempt)
    save(store, delivery)
    log.info(
        "webhook %s %s to %s attempt %d: %s",
        delivery.event_type,
        delivery.event_id,
        redacted(delivery.url),
        number,
        outcome if error is None else f"{outcome} ({error})",
    )
    return attempt


def deliver_due(
    store: MediaStore,
    settings: WebhookSettings,
    now: float | None = None,
    budget_s: float = 40.0,
    on_attempt: AttemptListener | None = None,
) -> list[Attempt]:
    """Attempt every pending delivery that is due, oldest first, within `budget_s` seconds."""
    if not settings.enabled:
        return []
    deadline = time.monotonic() + budget_s
    made = []
    with httpx.Client(timeout=settings.timeout_s, follow_redirects=False) as client:
        for delivery in pending(store):
            current = time.time() if now is None else now
            if delivery.next_attempt_at > current or time.monotonic() > deadline:
                continue
            attempt = attempt_delivery(client, store, settings, delivery, current)
            made.append(attempt)
            if on_attempt is not None:
                on_attempt(delivery, attempt)
    return made
