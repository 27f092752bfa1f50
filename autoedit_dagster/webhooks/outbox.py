"""The durable outbox: one record per (event, subscriber) in the store, every attempt in it.

`webhooks/pending/<delivery_id>.json` until delivered or given up, then `webhooks/done/…`. The
record holds the exact body, so every retry sends the same bytes with the same idempotency key
(the event id), and a restarted daemon picks the pending records up where they were. Queuing is
create-only: an event queued twice (a sensor tick repeated after a crash) is one delivery.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..names import WEBHOOKS_PREFIX
from ..resources import MediaStore
from .settings import WebhookSettings

PENDING_PREFIX = WEBHOOKS_PREFIX + "pending/"
DONE_PREFIX = WEBHOOKS_PREFIX + "done/"

Outcome = Literal["delivered", "retrying", "gave_up"]


class Attempt(BaseModel):
    number: int
    at: str
    status_code: int | None = None
    error: str | None = Field(default=None, description="Why it failed, without the URL or any header.")
    outcome: Outcome
    seconds: float


class Delivery(BaseModel):
    delivery_id: str
    event_id: str = Field(description="The idempotency key: the same on every attempt and every subscriber.")
    event_type: str
    url: str
    body: str = Field(description="The exact JSON sent; fixed when queued.")
    created_at: str
    next_attempt_at: float
    state: Literal["pending", "delivered", "gave_up"] = "pending"
    attempts: list[Attempt] = Field(default_factory=list)


def event_id(event_type: str, *parts: str) -> str:
    """A deterministic id for one occurrence: the same run's event gets the same id on any replay."""
    return "evt_" + hashlib.sha256("\x1f".join((event_type, *parts)).encode()).hexdigest()[:32]


def delivery_id(event: str, url: str) -> str:
    return hashlib.sha256(f"{event}\x1f{url}".encode()).hexdigest()[:32]


def pending_key(delivery: str) -> str:
    return f"{PENDING_PREFIX}{delivery}.json"


def done_key(delivery: str) -> str:
    return f"{DONE_PREFIX}{delivery}.json"


def enqueue(
    store: MediaStore,
    settings: WebhookSettings,
    event_type: str,
    key_parts: tuple[str, ...],
    data: dict[str, Any],
    now: datetime | None = None,
) -> list[str]:
    """Queue an event for every subscriber of `event_type`; returns the delivery ids newly queued."""
    if not settings.enabled:
        return []
    now = now or datetime.now(UTC)
    eid = event_id(event_type, *key_parts)
    body = json.dumps(
        {"id": eid, "type": event_type, "created_at": now.isoformat(timespec="seconds"), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    queued = []
    for url in settings.subscribers_for(event_type):
        did = delivery_id(eid, url)
        if store.exists(done_key(did)):
            continue
        record = Delivery(
            delivery_id=did,
            event_id=eid,
            event_type=event_type,
            url=url,
            body=body,
            created_at=now.isoformat(timespec="seconds"),
            next_attempt_at=now.timestamp(),
        )
        if store.create_bytes(pending_key(did), record.model_dump_json(indent=2).encode()):
            queued.append(did)
    return queued


def pending(store: MediaStore) -> list[Delivery]:
    found = []
    for obj in store.list(PENDING_PREFIX):
        if obj.key.endswith(".json"):
            try:
                found.append(Delivery.model_validate_json(store.read_bytes(obj.key)))
            except FileNotFoundError:  # finished between the listing and the read
                continue
    return sorted(found, key=lambda d: d.next_attempt_at)


def save(store: MediaStore, delivery: Delivery) -> None:
    """Write the record where its state says; a finished one leaves pending/ (done/ written first)."""
    data = delivery.model_dump_json(indent=2).encode()
    if delivery.state == "pending":
        store.write_bytes(pending_key(delivery.delivery_id), data)
        return
    store.write_bytes(done_key(delivery.delivery_id), data)
    store.delete(pending_key(delivery.delivery_id))


def finished(store: MediaStore) -> list[Delivery]:
    return [
        Delivery.model_validate_json(store.read_bytes(obj.key))
        for obj in store.list(DONE_PREFIX)
        if obj.key.endswith(".json")
    ]
