"""The signature header: `X-AutoEdit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC covers `f"{t}.".encode() + body`, the exact bytes sent, so a receiver verifies before
parsing, and a replayed body with an old `t` is refused by the receiver's tolerance.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-AutoEdit-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-AutoEdit-Event"
ATTEMPT_HEADER = "X-AutoEdit-Delivery-Attempt"
DEFAULT_TOLERANCE_S = 300


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """True if `header` signs `body` with `secret` and its timestamp is within `tolerance_s` of now."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
