"""A GraphQL client for a running AutoEditTATE deployment: dagster-webserver, or the gateway in front of it.

What dagster-graphql's `DagsterGraphQLClient` offers is used through it: launching a job run for
one video (`submit_job_execution`, i.e. `launchPipelineExecution`) and a run's status
(`get_run_status`, i.e. `pipelineRunOrError`). Everything it lacks is plain GraphQL over httpx,
against the schema of the installed dagster-graphql (1.13):

- `runsOrError(filter: {tags}, limit)`: the runs of one video, or the run the upload sensor made
  for one upload (our `autoedit/video_id` + `autoedit/upload_etag` tags);
- `assetNodes { partitionKeyConnection }` of `source_video`: the known video ids (the `videos`
  partitions), newest first, a page at a time;
- per page of videos, one document: each asset's `latestMaterializationByPartition(partitions)`
  (the paths the assets published: render, previews, exports) and each video's runs (aliased
  `runsOrError`); for a video with a run not succeeded (or one alone), `latestRunForPartition`
  per asset too (with the materialization, the partition's state); nothing asked grows with
  the archive;
- `assetCheckExecutions(assetKey, checkName, partition, limit)`: a video's check results, matched
  to the run that materialized the checked asset (executions recorded before the checks were
  partitioned have none and are read newest first and matched by the run alone);
- `launchPartitionBackfill(backfillParams: {assetSelection, partitionNames | allPartitions})` and
  `partitionBackfillOrError(backfillId)`.

Every failure becomes a `RemoteError` whose text is one line for people and whose `exit_code` is
2 when the user can fix it (bad URL, missing or refused token, unknown video or backfill) and 1
otherwise (server unreachable, rate limited, server or GraphQL error).

A token, when given, is sent on every request as ``Authorization: Bearer <token>`` (the gateway
verifies it; a bare dagster-webserver ignores it). Reads no environment variables: `remote.py`
reads AUTOEDIT_URL and AUTOEDIT_TOKEN.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

# Neither Dagster nor the code location is imported here: `autoedit status` must start in well
# under a second. dagster-graphql's client (which imports all of Dagster) loads on first launch.
from autoedit_dagster.names import (
    EDITOR_EXPORTS,
    EXPORT_SUFFIXES,
    PROFILE_NAMES,
    TAG_UPLOAD_ETAG,
    TAG_VIDEO_ID,
    VIDEO_JOB,
)

if TYPE_CHECKING:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

SOURCE_ASSET = ("source_video",)
PARTITION_TAG = "dagster/partition"
# Runs of a backfill over assets with a multi-run backfill policy carry a one-key range instead.
RANGE_START_TAG = "dagster/asset_partition_range_start"
BACKFILL_TAG = "dagster/backfill"

RUN_FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
BACKFILL_FINISHED = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})
BACKFILL_SUCCEEDED = frozenset({"COMPLETED", "COMPLETED_SUCCESS"})
# Path metadata the render-stage assets publish, by label: what `status` lists and `fetch` downloads.
RENDER_LABEL = "video"
EXPORT_LABELS = {fmt: EXPORT_SUFFIXES[fmt] for fmt in EDITOR_EXPORTS}
# The IO managers add a `uri` path entry for every stored value (parquet/JSON under work/): not an output.
INTERNAL_LABELS = frozenset({"uri"})

CHECK_PAGE = 50
CHECK_MAX_PAGES = 20
# A video's newest executions of one check read to find the one of the run that made the asset
# (later runs that planned it and did not materialize it come first).
CHECK_RECENT = 10
# Videos per status request, and partition keys per id page: bounded documents and answers.
STATUS_PAGE = 25
ID_PAGE = 1000
# Seconds between a run's creation and its check executions' timestamps (whole seconds, planned at launch).
CHECK_CLOCK_SLACK = 60.0

T = TypeVar("T")


# -------------------------------------------------------------------------------------- errors


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


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _http_detail(response: httpx.Response) -> str:
    """The gateway's (or a proxy's) reason, from a JSON body's error/detail/message or the text."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text, 200)
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if isinstance(body.get(key), str):
                return _one_line(body[key], 200)
    return _one_line(json.dumps(body), 200)


def _graphql_problem(body: Mapping[str, Any]) -> str | None:
    """The first GraphQL error, or the first PythonError in the data, as one line; None if clean."""
    errors = body.get("errors")
    if errors:
        first = errors[0]
        return _one_line(first.get("message") if isinstance(first, dict) else first)
    data = body.get("data")
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict) and value.get("__typename") == "PythonError":
                return _one_line(value.get("message") or "PythonError")
    return None


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
        seconds: float | None = None
        if retry_after:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = None
        when = f"; retry after {retry_after} s" if retry_after else "; retry later"
        return RateLimited(f"{url} is rate limiting this client (429 Too Many Requests){when}", seconds)
    if code in (404, 405):
        return UsageError(f"{url} answered HTTP {code}{reason}; is --url the Dagster webserver (or the gateway)?")
    return ServerError(f"{url} answered HTTP {code}{reason}")


# ------------------------------------------------------------------------------------- values


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


# ---------------------------------------------------------------------------------- documents

_RUN_FIELDS = "runId jobName status creationTime startTime endTime tags { key value }"
_ERROR_FIELDS = "__typename ... on Error { message }"

PING = "query AutoeditPing { version }"

RUNS = f"""
query AutoeditRuns($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    {_ERROR_FIELDS}
    ... on Runs {{ results {{ {_RUN_FIELDS} }} }}
  }}
}}
"""

ASSET_NODES = """
query AutoeditAssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
  }
}
"""

VIDEO_ID_PAGE = """
query AutoeditVideoIds($keys: [AssetKeyInput!], $limit: Int!, $ascending: Boolean!, $cursor: String) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    partitionKeyConnection(limit: $limit, ascending: $ascending, cursor: $cursor) { results cursor hasMore }
  }
}
"""

_MATERIALIZATION_FIELDS = """
      runId
      timestamp
      partition
      metadataEntries { label __typename ... on PathMetadataEntry { path } }
"""


def _latest_runs(video_ids: Sequence[str], indexes: Iterable[int]) -> str:
    return "\n".join(
        f"    r{i}: latestRunForPartition(partition: {_gql_string(video_ids[i])}) {{ runId status }}" for i in indexes
    )


def video_assets_query(video_ids: Sequence[str], runs_per_video: int = 5, planned: Iterable[int] = ()) -> str:
    """One document for a page of videos: each asset's latest materialization, each video's runs,
    and for the videos at `planned` indexes each asset's latest planned run (see `_status_page`).
    Nothing in it grows with the archive.
    """
    latest_runs = _latest_runs(video_ids, planned)
    run_queries = []
    for i, video_id in enumerate(video_ids):
        for suffix, tag in (("p", PARTITION_TAG), ("b", RANGE_START_TAG)):
            run_filter = f"{{tags: [{{key: {_gql_string(tag)}, value: {_gql_string(video_id)}}}]}}"
            run_queries.append(
                f"  v{i}{suffix}: runsOrError(filter: {run_filter}, limit: {runs_per_video}) {{\n"
                f"    {_ERROR_FIELDS}\n    ... on Runs {{ results {{ {_RUN_FIELDS} }} }}\n  }}"
            )
    return (
        "query AutoeditVideoAssets($partitions: [String!]) {\n  assetNodes {\n    assetKey { path }\n"
        "    groupName\n    isPartitioned\n"
        "    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }\n"
        f"    latestMaterializationByPartition(partitions: $partitions) {{{_MATERIALIZATION_FIELDS}    }}\n"
        f"{latest_runs}\n  }}\n" + "\n".join(run_queries) + "\n}\n"
    )


LAUNCH_BACKFILL = f"""
mutation AutoeditBackfill($params: LaunchBackfillParams!) {{
  launchPartitionBackfill(backfillParams: $params) {{
    {_ERROR_FIELDS}
    ... on LaunchBackfillSuccess {{ backfillId }}
    ... on PartitionKeysNotFoundError {{ partitionKeys }}
  }}
}}
"""

BACKFILL = f"""
query AutoeditBackfillStatus($id: String!) {{
  partitionBackfillOrError(backfillId: $id) {{
    {_ERROR_FIELDS}
    ... on PartitionBackfill {{
      id status title numPartitions partitionNames timestamp endTimestamp
      error {{ message }}
      runs(limit: 1000) {{ {_RUN_FIELDS} }}
      assetBackfillData {{
        assetBackfillStatuses {{
          __typename
          ... on AssetPartitionsStatusCounts {{
            assetKey {{ path }}
            numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
          }}
        }}
      }}
    }}
  }}
}}
"""

_CHECK_EXECUTION_FIELDS = """
  runId status timestamp partition
  evaluation { success severity description partition targetMaterialization { runId } }
"""


def _gql_string(value: str) -> str:
    """A GraphQL string literal (JSON's escaping is valid GraphQL)."""
    return json.dumps(value)


def _unwrap(payload: Mapping[str, Any], field_name: str, ok: str | Sequence[str]) -> dict[str, Any]:
    """`payload[field_name]` when its __typename is one of `ok`, else the typed error as a RemoteError."""
    value = payload.get(field_name)
    if not isinstance(value, dict):
        raise ServerError(f"unexpected answer from the server: no {field_name}")
    kinds = (ok,) if isinstance(ok, str) else tuple(ok)
    typename = value.get("__typename")
    if typename in kinds:
        return value
    message = _one_line(value.get("message") or typename)
    if typename in ("RunNotFoundError", "BackfillNotFoundError", "PartitionKeysNotFoundError"):
        raise NotFound(message)
    if typename == "UnauthorizedError":
        raise AuthError(f"not allowed: {message}")
    raise ServerError(f"{typename}: {message}")


# -------------------------------------------------------------------------------------- client


class AutoEditClient:
    """The remote operations `autoedit submit/status/fetch/backfill` need, against one deployment."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        poll_seconds: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        self.poll_seconds = poll_seconds
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=self.headers, timeout=timeout, transport=transport)
        self._timeout = timeout
        self._dagster_client: DagsterGraphQLClient | None = None
        self._asset_nodes: list[AssetNodeInfo] | None = None
        self.status_page, self.id_page = STATUS_PAGE, ID_PAGE  # smaller in tests, to see the paging

    @property
    def _dagster(self) -> DagsterGraphQLClient:
        """dagster-graphql's client, made (and Dagster imported) only by the calls that use it."""
        if self._dagster_client is None:
            from dagster_graphql import DagsterGraphQLClient

            self._dagster_client = DagsterGraphQLClient(
                self.endpoint.hostname.strip("[]"),
                port_number=self.endpoint.port,
                use_https=self.endpoint.use_https,
                path_prefix=self.endpoint.path_prefix,
                headers=dict(self.headers),
                timeout=max(1, round(self._timeout)),
            )
        return self._dagster_client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AutoEditClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------------------- transport

    @property
    def url(self) -> str:
        return self.endpoint.base_url

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Plain GraphQL: the `data` of the answer, or a RemoteError."""
        try:
            response = self._http.post(
                self.endpoint.graphql_url, json={"query": query, "variables": dict(variables or {})}
            )
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {_one_line(exc) or type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        is_graphql = isinstance(body, dict) and ("data" in body or "errors" in body)
        # dagster-webserver answers 500 with a GraphQL body when a resolver raised: report that error.
        if response.status_code >= 400 and not (response.status_code >= 500 and is_graphql):
            raise http_status_error(
                response.status_code, self.url, _http_detail(response), response.headers.get("Retry-After")
            )
        if not is_graphql:
            raise ServerError(f"{self.url} did not answer with GraphQL (is --url the Dagster webserver?)")
        problem = _graphql_problem(body)
        if problem:
            raise ServerError(f"GraphQL error from {self.url}: {problem}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise ServerError(f"{self.url} answered without data")
        return data

    def _dagster_call(self, call: Callable[[], T]) -> T:
        """Run a DagsterGraphQLClient call, turning its errors into RemoteErrors."""
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return call()
        except DagsterGraphQLClientError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: DagsterGraphQLClientError) -> RemoteError:
        from gql.transport.exceptions import TransportQueryError, TransportServerError

        cause: BaseException | None = exc.__cause__
        while cause is not None:
            if isinstance(cause, TransportServerError):
                return http_status_error(cause.code, self.url)
            if isinstance(cause, TransportQueryError):
                errors = cause.errors or []
                message = errors[0].get("message") if errors and isinstance(errors[0], dict) else str(cause)
                return ServerError(f"GraphQL error from {self.url}: {_one_line(message)}")
            if isinstance(cause, OSError) or type(cause).__name__ in ("TransportConnectionFailed", "ConnectionError"):
                return Unreachable(f"cannot reach {self.url}: {_one_line(cause)}")
            cause = cause.__cause__
        # Typed errors from the GraphQL answer: DagsterGraphQLClientError(type name, message).
        if len(exc.args) >= 2:
            kind, message = exc.args[0], exc.args[1]
            if kind in ("RunNotFoundError", "PipelineRunNotFoundError"):
                return NotFound(_one_line(message))
            if kind == "UnauthorizedError":
                return AuthError(f"not allowed: {_one_line(message)}")
            return ServerError(f"{kind}: {_one_line(message)}")
        return ServerError(_one_line(exc.args[0] if exc.args else type(exc).__name__))

    # ------------------------------------------------------------------------------ basics

    def ping(self) -> str:
        """The server's Dagster version; fails early on a bad URL or token."""
        return self.execute(PING)["version"]

    def asset_nodes(self) -> list[AssetNodeInfo]:
        if self._asset_nodes is None:
            nodes = []
            for node in self.execute(ASSET_NODES)["assetNodes"]:
                checks = node.get("assetChecksOrError") or {}
                nodes.append(
                    AssetNodeInfo(
                        path=tuple(node["assetKey"]["path"]),
                        group=node["groupName"],
                        partitioned=bool(node["isPartitioned"]),
                        checks=tuple(c["name"] for c in checks.get("checks") or ()),
                    )
                )
            self._asset_nodes = nodes
        return self._asset_nodes

    def group_assets(self, groups: Iterable[str]) -> list[tuple[str, ...]]:
        wanted = set(groups)
        return [node.path for node in self.asset_nodes() if node.group in wanted]

    def video_id_page(
        self, limit: int, *, ascending: bool = False, cursor: str | None = None
    ) -> tuple[list[str], str | None]:
        """One page of `videos` partitions (newest first unless `ascending`) and the next page's cursor."""
        variables = {"keys": [{"path": list(SOURCE_ASSET)}], "limit": limit, "ascending": ascending, "cursor": cursor}
        nodes = self.execute(VIDEO_ID_PAGE, variables)["assetNodes"]
        if not nodes or not nodes[0].get("partitionKeyConnection"):
            raise ServerError(f"{self.url} serves no `{asset_name(SOURCE_ASSET)}` asset; is this AutoEditTATE?")
        page = nodes[0]["partitionKeyConnection"]
        return list(page["results"]), page["cursor"] if page["hasMore"] else None

    def newest_video_ids(self, limit: int = 0) -> list[str]:
        """The newest `limit` videos (0: all), newest first, read in pages of `id_page`."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            want = self.id_page if limit <= 0 else min(self.id_page, limit - len(ids))
            page, cursor = self.video_id_page(want, cursor=cursor)
            ids += page
            if cursor is None or (limit > 0 and len(ids) >= limit):
                return ids

    def require_videos(self, video_ids: Sequence[str]) -> list[str]:
        """`video_ids` if all are `videos` partitions, else NotFound; pages newest first, stops once all are seen."""
        missing = set(video_ids)
        cursor: str | None = None
        while missing:
            page, cursor = self.video_id_page(self.id_page, cursor=cursor)
            missing.difference_update(page)
            if cursor is None:
                break
        if missing:
            unknown = [video_id for video_id in video_ids if video_id in missing]
            raise NotFound(f"unknown video{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        return list(video_ids)

    # -------------------------------------------------------------------------------- runs

    def runs(self, tags: Mapping[str, str], *, job_name: str | None = None, limit: int = 20) -> list[RunInfo]:
        """Runs carrying all `tags` (newest first)."""
        run_filter: dict[str, Any] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        if job_name:
            run_filter["pipelineName"] = job_name
        answer = _unwrap(self.execute(RUNS, {"filter": run_filter, "limit": limit}), "runsOrError", "Runs")
        return [RunInfo.from_graphql(node) for node in answer["results"]]

    def upload_run(self, video_id: str, etag: str) -> RunInfo | None:
        """The run the upload sensor requested for this upload (video id + the upload's etag), if any yet."""
        found = self.runs({TAG_VIDEO_ID: video_id, TAG_UPLOAD_ETAG: etag}, job_name=VIDEO_JOB, limit=1)
        return found[0] if found else None

    def launch_run(self, job_name: str, video_id: str, tags: Mapping[str, str] | None = None) -> str:
        """Launch `job_name` for one video (through dagster-graphql's client); returns the run id."""
        all_tags = {PARTITION_TAG: video_id, TAG_VIDEO_ID: video_id, **(tags or {})}
        return self._dagster_call(lambda: self._dagster.submit_job_execution(job_name, tags=all_tags))

    def run_status(self, run_id: str) -> str:
        """A run's status (through dagster-graphql's client), e.g. ``QUEUED``, ``SUCCESS``."""
        return self._dagster_call(lambda: self._dagster.get_run_status(run_id)).value

    def wait_for_run(self, run_id: str, timeout: float, on_change: Callable[[str], None] | None = None) -> str:
        """Poll until the run has finished; its final status. A RemoteError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            status = self.run_status(run_id)
            if status != last and on_change:
                on_change(status)
            last = status
            if status in RUN_FINISHED:
                return status
            if time.monotonic() >= deadline:
                raise RemoteError(f"run {run_id} still {status} after {timeout:.0f} s")
            time.sleep(self.poll_seconds)

    def wait_for_upload_run(self, video_id: str, etag: str, timeout: float) -> RunInfo:
        """Poll until the upload sensor has requested the run for this upload."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.upload_run(video_id, etag)
            if run is not None:
                return run
            if time.monotonic() >= deadline:
                raise RemoteError(
                    f"no run for {video_id} after {timeout:.0f} s: is the daemon running with `upload_sensor` on, "
                    "and does the server use the same storage as AUTOEDIT_STORAGE here?"
                )
            time.sleep(self.poll_seconds)

    # ------------------------------------------------------------------------------ status

    def video_status(
        self, video_ids: Sequence[str], runs_per_video: int = 5, *, known: bool = False
    ) -> list[dict[str, Any]]:
        """Per video: latest runs, each partitioned asset's state, check results and output URIs.

        Read `status_page` videos per request (two requests a page: assets and runs, then checks),
        so the cost follows the videos asked for, not the archive. Unless `known`, a video with no
        run and no materialization is looked up among the partitions (NotFound if absent).
        """
        result: list[dict[str, Any]] = []
        for start in range(0, len(video_ids), self.status_page):
            result += self._status_page(video_ids[start : start + self.status_page], runs_per_video, known)
        return result

    def _status_page(self, video_ids: Sequence[str], runs_per_video: int, known: bool) -> list[dict[str, Any]]:
        # An asset's state needs the latest run that planned it for the video (in progress or
        # failed?). Every such run carries the video's partition tags, so when all of a video's
        # runs are listed and succeeded, the materializations alone give the states; only other
        # videos pay for the per-asset lookup (a page of processed videos: none; one video: always).
        single = range(len(video_ids)) if len(video_ids) == 1 else ()
        data = self.execute(video_assets_query(video_ids, runs_per_video, single), {"partitions": list(video_ids)})
        unsettled = [i for i in range(len(video_ids)) if not single and not self._runs_settled(data, i, runs_per_video)]
        if unsettled:
            fields = _latest_runs(video_ids, unsettled)
            planned = self.execute(
                "query AutoeditPlannedRuns {\n  assetNodes {\n    assetKey { path }\n" + fields + "\n  }\n}"
            )
            by_path = {tuple(node["assetKey"]["path"]): node for node in planned["assetNodes"]}
            for node in data["assetNodes"]:
                node.update(by_path.get(tuple(node["assetKey"]["path"]), {}))
        nodes = [node for node in data["assetNodes"] if node["isPartitioned"]]
        checks_by_asset = {
            tuple(node["assetKey"]["path"]): tuple(
                c["name"] for c in (node.get("assetChecksOrError") or {}).get("checks") or ()
            )
            for node in nodes
        }
        result = []
        unseen = []
        for index, video_id in enumerate(video_ids):
            runs = self._page_runs(data, index, video_id, runs_per_video)
            # When the run was created, for matching unpartitioned (legacy) check executions; an
            # older run than those listed leaves 0: that search then reads its pages to the end.
            created = {run.run_id: run.creation_time or 0.0 for run in runs}
            assets: dict[str, dict[str, Any]] = {}
            outputs: dict[str, dict[str, str]] = {}
            materialized_by: dict[tuple[str, ...], tuple[str, float]] = {}
            for node in nodes:
                path = tuple(node["assetKey"]["path"])
                event = (node.get("latestMaterializationByPartition") or [None] * len(video_ids))[index]
                planned = node.get(f"r{index}")
                assets[asset_name(path)] = {
                    "state": _partition_state(planned, event),
                    "group": node["groupName"],
                    "run_id": event["runId"] if event else None,
                    "materialized_at": int(event["timestamp"]) / 1000 if event else None,
                }
                if not event:
                    continue
                materialized_by[path] = (event["runId"], created.get(event["runId"], 0.0))
                for entry in event.get("metadataEntries") or ():
                    if entry.get("__typename") == "PathMetadataEntry" and entry["label"] not in INTERNAL_LABELS:
                        group = node["groupName"] if node["groupName"] in PROFILE_NAMES else "source"
                        outputs.setdefault(group, {})[entry["label"]] = entry["path"]
            if not runs and all(info["state"] == "MISSING" for info in assets.values()):
                unseen.append(video_id)
            result.append(
                {
                    "video_id": video_id,
                    "latest_run": runs[0].to_json() if runs else None,
                    "runs": [run.to_json() for run in runs],
                    "assets": assets,
                    "checks": {},
                    "outputs": outputs,
                    "_materialized_by": materialized_by,
                }
            )
        if unseen and not known:
            self.require_videos(unseen)
        self._attach_checks(result, checks_by_asset)
        for video in result:
            del video["_materialized_by"]
        return result

    @staticmethod
    def _runs_settled(data: Mapping[str, Any], index: int, limit: int) -> bool:
        """All the video's runs are in the page (fewer than `limit` each way) and all succeeded."""
        answers = [_unwrap(data, f"v{index}{suffix}", "Runs")["results"] for suffix in ("p", "b")]
        return all(len(runs) < limit and all(run["status"] == "SUCCESS" for run in runs) for runs in answers)

    @staticmethod
    def _page_runs(data: Mapping[str, Any], index: int, video_id: str, limit: int) -> list[RunInfo]:
        """A video's runs in a status page, newest first: by partition tag, and backfill runs by one-key range."""
        by_id: dict[str, RunInfo] = {}
        for suffix in ("p", "b"):
            answer = _unwrap(data, f"v{index}{suffix}", "Runs")
            for node in answer["results"]:
                run = RunInfo.from_graphql(node)
                if suffix == "b" and run.tags.get("dagster/asset_partition_range_end") != video_id:
                    continue
                by_id[run.run_id] = run
        return sorted(by_id.values(), key=lambda r: r.creation_time or 0.0, reverse=True)[:limit]

    def _attach_checks(
        self, videos: list[dict[str, Any]], checks_by_asset: Mapping[tuple[str, ...], Sequence[str]]
    ) -> None:
        """Per video, the check executions of the run that materialized each checked asset.

        The checks are partitioned by video: one request asks each (video, asset, check) for its
        few newest executions in that video's partition, however old the video. Executions from
        before the checks were partitioned have no partition and are found by `_legacy_checks`.
        """
        wanted = [
            (video, path, check, run_id)
            for video in videos
            for path, (run_id, _created) in video["_materialized_by"].items()
            for check in checks_by_asset.get(path, ())
        ]
        if not wanted:
            return
        fields = [
            f"c{i}: assetCheckExecutions(assetKey: {{path: {json.dumps(list(path))}}}, "
            f"checkName: {_gql_string(check)}, partition: {_gql_string(video['video_id'])}, "
            f"limit: {CHECK_RECENT}) {{ id {_CHECK_EXECUTION_FIELDS} }}"
            for i, (video, path, check, _run_id) in enumerate(wanted)
        ]
        data = self.execute("query AutoeditChecks {\n" + "\n".join(fields) + "\n}")
        missing = []
        for i, (video, path, check, run_id) in enumerate(wanted):
            execution = next((e for e in data.get(f"c{i}") or () if e["runId"] == run_id), None)
            if execution is None:
                missing.append((video, path, check, run_id))
            else:
                _put_check(video, path, check, run_id, execution)
        if missing:
            self._legacy_checks(missing)

    def _legacy_checks(self, wanted: Sequence[tuple[dict[str, Any], tuple[str, ...], str, str]]) -> None:
        """Unpartitioned executions (recorded before the checks were partitioned), matched by run.

        Read newest first, one page per (asset, check) per round, until the pages reach back
        before the oldest wanted run was created (an execution's timestamp is when its run planned it).
        """
        oldest: dict[tuple[tuple[str, ...], str], float] = {}
        for video, path, check, _run_id in wanted:
            created = video["_materialized_by"][path][1]
            oldest[(path, check)] = min(created, oldest.get((path, check), created))
        found: dict[tuple[tuple[str, ...], str, str], dict[str, Any]] = {}
        cursors: dict[tuple[tuple[str, ...], str], str | None] = dict.fromkeys(oldest)
        open_pairs = list(oldest)
        for _ in range(CHECK_MAX_PAGES):
            if not open_pairs:
                break
            fields = []
            for i, (path, check) in enumerate(open_pairs):
                cursor = cursors[(path, check)]
                args = (
                    f"assetKey: {{path: {json.dumps(list(path))}}}, checkName: {_gql_string(check)}, "
                    f'partition: "", limit: {CHECK_PAGE}' + (f", cursor: {_gql_string(cursor)}" if cursor else "")
                )
                fields.append(f"c{i}: assetCheckExecutions({args}) {{ id {_CHECK_EXECUTION_FIELDS} }}")
            data = self.execute("query AutoeditLegacyChecks {\n" + "\n".join(fields) + "\n}")
            still_open = []
            for i, pair in enumerate(open_pairs):
                page = data.get(f"c{i}") or []
                for execution in page:
                    found.setdefault((*pair, execution["runId"]), execution)
                reached_back = bool(page) and float(page[-1]["timestamp"]) < oldest[pair] - CHECK_CLOCK_SLACK
                if len(page) == CHECK_PAGE and not reached_back:
                    cursors[pair] = page[-1]["id"]
                    still_open.append(pair)
            open_pairs = still_open
        for video, path, check, run_id in wanted:
            execution = found.get((path, check, run_id))
            if execution is not None:
                _put_check(video, path, check, run_id, execution)

    # ---------------------------------------------------------------------------- backfill

    def launch_backfill(
        self,
        asset_paths: Sequence[Sequence[str]],
        video_ids: Sequence[str] | None,
        *,
        title: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """An asset backfill of `asset_paths` over `video_ids` (None: every video); the backfill id."""
        if not asset_paths:
            raise UsageError("nothing to backfill: no assets selected")
        params: dict[str, Any] = {
            "assetSelection": [{"path": list(path)} for path in asset_paths],
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        if video_ids is None:
            params["allPartitions"] = True
        else:
            params["partitionNames"] = list(video_ids)
        if title:
            params["title"] = title
        answer = _unwrap(
            self.execute(LAUNCH_BACKFILL, {"params": params}), "launchPartitionBackfill", "LaunchBackfillSuccess"
        )
        return answer["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        answer = _unwrap(self.execute(BACKFILL, {"id": backfill_id}), "partitionBackfillOrError", "PartitionBackfill")
        assets = {}
        for item in (answer.get("assetBackfillData") or {}).get("assetBackfillStatuses") or ():
            if item.get("__typename") == "AssetPartitionsStatusCounts":
                assets[asset_name(item["assetKey"]["path"])] = {
                    "targeted": item["numPartitionsTargeted"],
                    "in_progress": item["numPartitionsInProgress"],
                    "materialized": item["numPartitionsMaterialized"],
                    "failed": item["numPartitionsFailed"],
                }
        runs = [RunInfo.from_graphql(node).to_json() for node in answer.get("runs") or ()]
        return {
            "backfill_id": answer["id"],
            "status": answer["status"],
            "title": answer.get("title"),
            "partitions": answer.get("partitionNames"),
            "num_partitions": answer.get("numPartitions"),
            "created": answer.get("timestamp"),
            "ended": answer.get("endTimestamp"),
            "error": (answer.get("error") or {}).get("message"),
            "runs": runs,
            "assets": assets,
        }

    def wait_for_backfill(
        self, backfill_id: str, timeout: float, on_change: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            info = self.backfill(backfill_id)
            progress = (info["status"], tuple((r["run_id"], r["status"]) for r in info["runs"]))
            if progress != last and on_change:
                on_change(info)
            last = progress
            if info["status"] in BACKFILL_FINISHED:
                return info
            if time.monotonic() >= deadline:
                raise RemoteError(f"backfill {backfill_id} still {info['status']} after {timeout:.0f} s")
            time.sleep(self.poll_seconds)


# Run statuses in which a run may still materialize what it planned (Dagster's "materializing").
RUN_IN_PROGRESS = frozenset({"QUEUED", "NOT_STARTED", "MANAGED", "STARTING", "STARTED", "CANCELING"})


def _partition_state(planned: Mapping[str, Any] | None, event: Mapping[str, Any] | None) -> str:
    """MATERIALIZING, FAILED (the latest run planning it failed without it), MATERIALIZED or MISSING.

    `planned` is the latest run that planned this asset for the video, `event` its latest
    materialization: the same rule as Dagster's partition statuses, read for one partition.
    """
    if planned and planned["status"] in RUN_IN_PROGRESS:
        return "MATERIALIZING"
    if planned and planned["status"] == "FAILURE" and (not event or event["runId"] != planned["runId"]):
        return "FAILED"
    return "MATERIALIZED" if event else "MISSING"


def _put_check(
    video: dict[str, Any], path: tuple[str, ...], check: str, run_id: str, execution: Mapping[str, Any]
) -> None:
    evaluation = execution.get("evaluation") or {}
    video["checks"][f"{asset_name(path)}:{check}"] = {
        "status": execution["status"],
        "passed": evaluation.get("success"),
        "severity": evaluation.get("severity"),
        "description": evaluation.get("description"),
        "run_id": run_id,
    }
