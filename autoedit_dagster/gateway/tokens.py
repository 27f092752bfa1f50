"""The gateway's bearer tokens: JWTs carrying a role, minted by `autoedit token`, checked per request.

A token is a JWT with `role` (`viewer` or `operator`) or `scope` (space-separated, RFC 9068: today
only `metrics`, for Prometheus, which may read `/metrics` and nothing else), `exp` (required),
and usually `sub` (the client's name: its rate-limit bucket), `iat` and `jti`. Two ways to sign, chosen by the token's
own `alg` header and each tied to its own key, so one key can never be used as the other
(the HS256/RS256 confusion attack):

- HS256 with a shared secret (`AUTOEDIT_JWT_SECRET`, at least 32 bytes, else `ConfigurationError`:
  a short HMAC key is guessed offline from any one token): what `autoedit token` mints;
- RS256 with a public key (`AUTOEDIT_JWT_PUBLIC_KEY`, the PEM text or a path to a PEM file):
  optional, for tokens minted by an identity provider that keeps the private key.

Any other algorithm (including `none`) is refused. Environment: AUTOEDIT_JWT_SECRET,
AUTOEDIT_JWT_PUBLIC_KEY (read by `TokenVerifier.from_env`, never at import time).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

ROLES = ("viewer", "operator")
SCOPES = ("metrics",)  # what a token without a role may do
HS256, RS256 = "HS256", "RS256"
DEFAULT_TTL_SECONDS = 24 * 3600
# HMAC-SHA256 keys shorter than the digest are guessable offline from any one token.
MIN_SECRET_BYTES = 32
GENERATE_SECRET = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"


class TokenError(Exception):
    """A token that does not let its bearer in. `reason` is a stable code for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigurationError(Exception):
    """The gateway or `autoedit token` cannot run with the environment it was given."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    role: str | None  # None for a token that carries only scopes
    subject: str | None
    expires_at: float
    claims: Mapping[str, Any] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset()

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def label(self) -> str:
        """The role, or the scopes of a role-less token: a bounded label for metrics and logs."""
        return self.role or "+".join(sorted(self.scopes))


def read_public_key(value: str) -> str:
    """PEM text as is, or the contents of the file it names."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"AUTOEDIT_JWT_PUBLIC_KEY is neither PEM text nor a readable file: {text[:60]}")
    return path.read_text()


class TokenVerifier:
    """Checks signature, expiry and role of a bearer token; raises `TokenError` with a clear reason."""

    def __init__(self, secret: str | None = None, public_key: str | None = None, leeway: float = 0.0) -> None:
        if not secret and not public_key:
            raise ConfigurationError("set AUTOEDIT_JWT_SECRET (HS256) or AUTOEDIT_JWT_PUBLIC_KEY (RS256)")
        self._keys: dict[str, Any] = {}
        if secret:
            check_secret(secret)
            self._keys[HS256] = secret
        if public_key:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            try:
                self._keys[RS256] = load_pem_public_key(public_key.encode())
            except ValueError as exc:
                raise ConfigurationError(f"AUTOEDIT_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc
        self.leeway = leeway

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenVerifier:
        env = os.environ if environ is None else environ
        public_key = env.get("AUTOEDIT_JWT_PUBLIC_KEY")
        return cls(secret=env.get("AUTOEDIT_JWT_SECRET") or None,
                   public_key=read_public_key(public_key) if public_key else None)  # fmt: skip

    @property
    def algorithms(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise TokenError("missing", "no token: send `Authorization: Bearer <token>` (or log in at /login)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError("malformed", f"malformed token: {exc}") from exc
        alg = header.get("alg")
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise TokenError(
                "algorithm", f"token algorithm {alg!r} is not accepted here (accepted: {', '.join(self.algorithms)})"
            )
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": False},
            )  # fmt: skip
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("expired", "token expired: mint a new one with `autoedit token`") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("claims", f"token refused: {exc} (tokens must expire)") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("signature", "token signature does not verify (wrong key or altered token)") from exc
        except jwt.DecodeError as exc:
            raise TokenError("malformed", f"malformed token: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("claims", f"token refused: {exc}") from exc
        role, scope = claims.get("role"), claims.get("scope")
        if role is not None and role not in ROLES:
            raise TokenError("claims", f"token role {role!r} is not one of {', '.join(ROLES)}")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else None
        if scope is not None and (scopes is None or not scopes <= set(SCOPES)):
            raise TokenError("claims", f"token scope {scope!r} is not a space-separated list of {', '.join(SCOPES)}")
        if role is None and not scopes:
            raise TokenError("claims", f"token has neither a role ({', '.join(ROLES)}) nor a scope")
        subject = claims.get("sub")
        return Principal(
            role=role,
            subject=str(subject) if subject not in (None, "") else None,
            expires_at=float(claims["exp"]),
            claims=claims,
            scopes=scopes or frozenset(),
        )


def check_secret(secret: str | None) -> str:
    """The HS256 secret, or `ConfigurationError` (one line) when it is missing or short enough to guess offline."""
    if not secret:
        raise ConfigurationError("AUTOEDIT_JWT_SECRET is not set: it signs the tokens")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"AUTOEDIT_JWT_SECRET is {len(secret.encode())} bytes, it must be at least {MIN_SECRET_BYTES} random "
            f"bytes: {GENERATE_SECRET}"
        )
    return secret


def mint_token(
    secret: str,
    role: str | None,
    subject: str | None = None,
    ttl: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    scopes: tuple[str, ...] = (),
) -> str:
    """An HS256 token for `role` (or, without one, only `scopes`), valid `ttl` seconds; `subject` names the
    client (its rate-limit bucket)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if unknown := set(scopes) - set(SCOPES):
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}, not {', '.join(sorted(unknown))}")
    if role is None and not scopes:
        raise ValueError("a token needs a role or a scope")
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    check_secret(secret)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iat": issued, "exp": issued + int(ttl), "jti": uuid.uuid4().hex}
    if role is not None:
        claims["role"] = role
    if scopes:
        claims["scope"] = " ".join(sorted(set(scopes)))
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm=HS256)
