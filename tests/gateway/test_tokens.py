"""Token minting and verification: every way a token can be wrong is refused with its own reason."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from autoedit_dagster.gateway import commands
from autoedit_dagster.gateway.tokens import ConfigurationError, TokenError, TokenVerifier, mint_token

from .conftest import SECRET


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


def reason(verifier: TokenVerifier, value: str | None) -> str:
    with pytest.raises(TokenError) as caught:
        verifier.verify(value)
    return caught.value.reason


def test_minted_token_round_trips() -> None:
    principal = TokenVerifier(secret=SECRET).verify(mint_token(SECRET, "viewer", subject="ci", ttl=60))
    assert (principal.role, principal.subject, principal.is_operator) == ("viewer", "ci", False)
    assert 55 < principal.expires_at - time.time() <= 60


def test_each_bad_token_has_its_reason() -> None:
    verifier = TokenVerifier(secret=SECRET)
    now = time.time()
    assert reason(verifier, None) == "missing"
    assert reason(verifier, "not-a-jwt") == "malformed"
    assert reason(verifier, mint_token(SECRET, "operator", ttl=60, now=now - 3600)) == "expired"
    assert reason(verifier, mint_token("another-secret-" + "x" * 32, "operator")) == "signature"
    no_exp = jwt.encode({"role": "operator", "sub": "x"}, SECRET, algorithm="HS256")
    assert reason(verifier, no_exp) == "claims"
    bad_role = jwt.encode({"role": "admin", "exp": now + 60}, SECRET, algorithm="HS256")
    assert reason(verifier, bad_role) == "claims"
    unsigned = jwt.encode({"role": "operator", "exp": now + 60}, None, algorithm="none")
    assert reason(verifier, unsigned) == "algorithm"


def test_rs256_public_key_and_no_algorithm_confusion(rsa_keys) -> None:
    private, public = rsa_keys
    verifier = TokenVerifier(public_key=public)
    good = jwt.encode({"role": "operator", "sub": "idp-user", "exp": time.time() + 60}, private, algorithm="RS256")
    assert verifier.verify(good).subject == "idp-user"
    # The classic attack: an HS256 token whose HMAC key is the (public) RSA key text.
    forged = jwt.api_jws.PyJWS(algorithms=["HS256"])
    forged._algorithms["HS256"].prepare_key = lambda key: key  # PyJWT refuses PEM as an HMAC key otherwise
    confused = forged.encode(b'{"role":"operator","exp":9999999999}', public.encode(), algorithm="HS256")
    assert reason(verifier, confused) == "algorithm"


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ConfigurationError, match="AUTOEDIT_JWT_SECRET"):
        TokenVerifier()


def test_token_command_prints_a_verifiable_token(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOEDIT_JWT_SECRET", SECRET)
    assert commands.main(["token", "--role", "operator", "--subject", "deploy-bot", "--ttl", "120"]) == 0
    out, err = capsys.readouterr()
    principal = TokenVerifier(secret=SECRET).verify(out.strip())
    assert (principal.role, principal.subject) == ("operator", "deploy-bot")
    assert "deploy-bot" in err and out.count("\n") == 1


def test_token_command_without_secret_is_one_clear_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("AUTOEDIT_JWT_SECRET", raising=False)
    assert commands.main(["token", "--role", "viewer"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == err.strip().splitlines()[0] and "AUTOEDIT_JWT_SECRET" in err


def test_a_metrics_token_has_a_scope_and_no_role() -> None:
    principal = TokenVerifier(secret=SECRET).verify(mint_token(SECRET, None, subject="prometheus", scopes=("metrics",)))
    assert (principal.role, principal.scopes, principal.label) == (None, frozenset({"metrics"}), "metrics")
    now = time.time()
    for claims in ({"exp": now + 60}, {"scope": "admin", "exp": now + 60}, {"scope": 7, "exp": now + 60}):
        assert reason(TokenVerifier(secret=SECRET), jwt.encode(claims, SECRET, algorithm="HS256")) == "claims"


def test_short_secrets_are_refused_everywhere(monkeypatch, capsys) -> None:
    """Issue 11.2: a secret under 32 bytes (such as compose's old `change-me-trial-only`) is guessable."""
    for make in (lambda: TokenVerifier(secret="x" * 31), lambda: mint_token("x" * 31, "viewer")):
        with pytest.raises(ConfigurationError, match="at least 32"):
            make()
    monkeypatch.setenv("AUTOEDIT_JWT_SECRET", "change-me-trial-only")
    assert commands.main(["token", "--scope", "metrics"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "secrets.token_urlsafe(48)" in err


def test_gateway_help_lists_every_variable_the_gateway_reads(capsys) -> None:
    """`autoedit gateway --help` names every environment variable the gateway's code reads."""
    import re
    from pathlib import Path

    from autoedit_dagster import gateway

    read = set()
    for module in Path(gateway.__file__).parent.glob("*.py"):
        read |= set(re.findall(r"""env(?:iron)?\.get\(\s*["']([A-Z_]+)["']""", module.read_text()))
    read |= {"AUTOEDIT_STORAGE", "AUTOEDIT_WEBHOOK_URLS", "AUTOEDIT_WEBHOOK_SECRET"}  # through the review site
    assert {"AUTOEDIT_JWT_SECRET", "AUTOEDIT_RATE_LIMIT", "AUTOEDIT_TRUSTED_PROXIES", "AUTOEDIT_LOG_FORMAT"} <= read
    with pytest.raises(SystemExit) as done:
        commands.main(["gateway", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "environment:" in shown and "example:" in shown
    assert sorted(name for name in read if name not in shown) == []
