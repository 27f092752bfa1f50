"""Every failure talking to a deployment as a `RemoteError`: one line for people, and an exit code
(2 when the user can fix it: bad URL, missing or refused token, unknown video or backfill; 1
otherwise: server unreachable, rate limited, server or GraphQL error)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class RemoteError(Exception):
    """A failure talking to the deployment, worded as one line for people."""

    exit_code = 1


class UsageError(RemoteError):
    """Something the user can fix: a bad URL, an unknown video, a missing file."""

    exit_code = 2


class NotFound(UsageError):
    """The server does not know the video, run or backfill named."""


class AuthError(UsageError):
    """401 or 403: no token, a bad one, or one whose role may not do this."""


class Unreachable(RemoteError):
    """No HTTP answer: connection refused, DNS failure, timeout."""


class RateLimited(RemoteError):
    """429 from the gateway; `retry_after` is its Retry-After in seconds, when given."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(RemoteError):
    """An HTTP error status, a GraphQL error, or an error type in a GraphQL answer."""


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def http_detail(response: httpx.Response) -> str:
    """The gateway's (or a proxy's) reason, from a JSON body's error/detail/message or the text."""
    try:
        body = response.json()
    except ValueError:
        return one_line(response.text, 200)
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if isinstance(body.get(key), str):
                return one_line(body[key], 200)
    return one_line(json.dumps(body), 200)


def graphql_problem(body: Mapping[str, Any]) -> str | None:
    """The first GraphQL error, or the first PythonError in the data, as one line; None if clean."""
    errors = body.get("errors")
    if errors:
        first = errors[0]
        return one_line(first.get("message") if isinstance(first, dict) else first)
    data = body.get("data")
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict) and value.get("__typename") == "PythonError":
                return one_line(value.get("message") or "PythonError")
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's seconds (the delay form; an HTTP date or garbage gives None)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def http_status_error(code: int | None, url: str, detail: str = "", retry_after: str | None = None) -> RemoteError:
    """The RemoteError for an HTTP error status (shared by the httpx and the dagster-graphql paths)."""
    reason = f": {detail}" if detail else ""
    if code == 401:
        return AuthError(
            f"{url} refused the request (401 Unauthorized{reason}); pass a token with --token or AUTOEDIT_TOKEN"
        )
    if code == 403:
        return AuthError(f"{url} refused the request (403 Forbidden{reason}); the token's role may not do this")
    if code == 429:
        seconds = retry_after_seconds(retry_after)
        when = f"; retry after {retry_after} s" if retry_after else "; retry later"
        return RateLimited(f"{url} is rate limiting this client (429 Too Many Requests){when}", seconds)
    if code in (404, 405):
        return UsageError(f"{url} answered HTTP {code}{reason}; is --url the Dagster webserver (or the gateway)?")
    return ServerError(f"{url} answered HTTP {code}{reason}")


def unwrap(payload: Mapping[str, Any], field_name: str, ok: str | Sequence[str]) -> dict[str, Any]:
    """`payload[field_name]` when its __typename is one of `ok`, else the typed error as a RemoteError."""
    value = payload.get(field_name)
    if not isinstance(value, dict):
        raise ServerError(f"unexpected answer from the server: no {field_name}")
    kinds = (ok,) if isinstance(ok, str) else tuple(ok)
    typename = value.get("__typename")
    if typename in kinds:
        return value
    message = one_line(value.get("message") or typename)
    if typename in ("RunNotFoundError", "BackfillNotFoundError", "PartitionKeysNotFoundError"):
        raise NotFound(message)
    if typename == "UnauthorizedError":
        raise AuthError(f"not allowed: {message}")
    raise ServerError(f"{typename}: {message}")
