"""The values the remote commands read from a deployment: its endpoint, runs and asset nodes, the
run and backfill states that end a wait, and the labels of the files the assets publish."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from autoedit_dagster.names import EDITOR_EXPORTS, EXPORT_SUFFIXES

from .errors import UsageError, one_line
from .queries import BACKFILL_TAG

RUN_FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
STEP_FINISHED = frozenset({"SUCCESS", "FAILURE", "SKIPPED"})
BACKFILL_FINISHED = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})
BACKFILL_SUCCEEDED = frozenset({"COMPLETED", "COMPLETED_SUCCESS"})
# Path metadata the render-stage assets publish, by label: what `status` lists and `fetch` downloads.
RENDER_LABEL = "video"
EXPORT_LABELS = {fmt: EXPORT_SUFFIXES[fmt] for fmt in EDITOR_EXPORTS}
# The IO managers add a `uri` path entry for every stored value (parquet/JSON under work/): not an output.
INTERNAL_LABELS = frozenset({"uri"})


@dataclass(frozen=True)
class Endpoint:
    """A webserver base URL split the way DagsterGraphQLClient wants it."""

    base_url: str  # scheme://host[:port][/prefix], no trailing slash
    hostname: str
    port: int | None
    use_https: bool
    path_prefix: str

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        text = (url or "").strip()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"bad server URL {text!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad server URL {text!r}: expected http(s)://host[:port][/prefix]")
        if parts.query or parts.fragment:
            raise UsageError(f"bad server URL {text!r}: no query string or fragment expected")
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/graphql"):  # people paste the GraphQL endpoint itself
            prefix = prefix[: -len("/graphql")]
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{port}" if port else host
        return cls(
            base_url=f"{parts.scheme}://{netloc}{prefix}",
            hostname=host,
            port=port,
            use_https=parts.scheme == "https",
            path_prefix=prefix,
        )


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    job_name: str
    status: str
    creation_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_graphql(cls, node: Mapping[str, Any]) -> RunInfo:
        return cls(
            run_id=node["runId"],
            job_name=node["jobName"],
            status=node["status"],
            creation_time=node.get("creationTime"),
            start_time=node.get("startTime"),
            end_time=node.get("endTime"),
            tags={t["key"]: t["value"] for t in node.get("tags") or ()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job_name,
            "status": self.status,
            "created": self.creation_time,
            "started": self.start_time,
            "ended": self.end_time,
            "backfill_id": self.tags.get(BACKFILL_TAG),
        }


@dataclass(frozen=True)
class AssetNodeInfo:
    path: tuple[str, ...]
    group: str
    partitioned: bool
    checks: tuple[str, ...]

    @property
    def name(self) -> str:
        return "/".join(self.path)


def asset_name(path: Iterable[str]) -> str:
    return "/".join(path)


def failure_reason(run: Mapping[str, Any] | None) -> str | None:
    """Why a run failed, from a `RUN_FAILURE_FIELDS` answer, worded as the quarantine record words it:
    the first failed step's error (the user's exception inside Dagster's wrappers), else the run
    failure's message; None when neither is there."""
    events = ((run or {}).get("eventConnection") or {}).get("events") or ()
    for event in events:
        error = event.get("error") if event.get("__typename") == "ExecutionStepFailureEvent" else None
        if not error:
            continue
        while (error.get("className") or "").startswith("Dagster") and error.get("cause"):
            error = error["cause"]
        kind, message = error.get("className") or "", (error.get("message") or "").strip()
        head, sep, rest = message.partition(": ")  # traceback's "package.module.Class: text"
        if sep and kind and head.rsplit(".", 1)[-1] == kind:
            message = rest
        return one_line(f"step {event.get('stepKey')}: {kind + ': ' if kind else ''}{message}")
    for event in events:
        if event.get("__typename") == "RunFailureEvent":
            return one_line(event.get("message") or "the run failed")
    return None
