"""A GraphQL client for a running AutoEditTATE deployment: dagster-webserver, or the gateway in front of it.

What dagster-graphql's `DagsterGraphQLClient` offers is used through it: launching a job run for
one video (`submit_job_execution`, i.e. `launchPipelineExecution`). Everything else is plain
GraphQL over httpx, against the schema of the installed dagster-graphql (1.13):

- `runOrError(runId) { status stepStats }`: a run's status and its steps, one request a poll
  (`submit --wait` prints each step as it finishes);
- `runsOrError(filter: {tags}, limit)`: the runs of one video, or the run the upload sensor made
  for one upload (our `autoedit/video_id` + `autoedit/upload_etag` tags);
- `assetNodes { partitionKeyConnection }` of `source_video`: the known video ids (the `videos`
  partitions), newest first, a page at a time;
- per page of videos, one document: each asset's `latestMaterializationByPartition(partitions)`
  (the paths the assets published: render, previews, exports) and each video's runs (aliased
  `runsOrError`); for a video with a run not succeeded (or one alone), `latestRunForPartition`
  per asset too (with the materialization, the partition's state); nothing asked grows with
  the archive;
- `logsForRun(runId)`, its check events only: a video's check results, read from the run that
  materialized the checked asset (one aliased field per run, whatever the video's age and however
  the checks were recorded: unpartitioned, per video, or before either), and in the same
  document, for a video whose latest run failed, that run's step failures (the reason);
- `repositoriesOrError { partitionSets }` (the code location and partition set of the job to
  backfill), `launchPartitionBackfill(backfillParams: {selector, partitionNames | allPartitions})`
  (a job backfill) and `partitionBackfillOrError(backfillId)` (job and asset backfills).

A 429 with a Retry-After of a minute or less is waited out once, said on stderr, and the request
sent once more. Every failure becomes a `RemoteError` whose text is one line for people and whose
`exit_code` is 2 when the user can fix it (bad URL, missing or refused token, unknown video or
backfill) and 1 otherwise (server unreachable, rate limited, server or GraphQL error).

A token, when given, is sent on every request as ``Authorization: Bearer <token>`` (the gateway
verifies it; a bare dagster-webserver ignores it). Reads no environment variables: `commands.py`
reads AUTOEDIT_URL and AUTOEDIT_TOKEN.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

# Neither Dagster nor the code location is imported here: `autoedit status` must start in well
# under a second. dagster-graphql's client (which imports all of Dagster) loads on first launch.
from autoedit_dagster.names import TAG_UPLOAD_ETAG, TAG_VIDEO_ID, VIDEO_JOB

from .errors import (
    AuthError,
    NotFound,
    RemoteError,
    ServerError,
    Unreachable,
    UsageError,
    graphql_problem,
    http_detail,
    http_status_error,
    one_line,
    retry_after_seconds,
    unwrap,
)
from .queries import (
    ASSET_NODES,
    BACKFILL,
    BACKFILL_TARGETS,
    LAUNCH_BACKFILL,
    PARTITION_TAG,
    PING,
    RUN_STEPS,
    RUNS,
    SOURCE_ASSET,
    VIDEO_ID_PAGE,
)
from .records import BACKFILL_FINISHED, RUN_FINISHED, STEP_FINISHED, AssetNodeInfo, Endpoint, RunInfo, asset_name
from .status import ID_PAGE, STATUS_PAGE, VideoStatus

if TYPE_CHECKING:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

T = TypeVar("T")
# The longest Retry-After the client waits out (once) before retrying; longer ones are the error.
RETRY_AFTER_MAX = 60.0


class AutoEditClient(VideoStatus):
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
        """Plain GraphQL: the `data` of the answer, or a RemoteError.

        Rate limited (429) with a Retry-After of at most RETRY_AFTER_MAX seconds, it says so on
        stderr, waits that long and sends the request once more; a second 429 is the error.
        """
        payload = {"query": query, "variables": dict(variables or {})}
        response = self._post(payload)
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait <= RETRY_AFTER_MAX:
                print(
                    f"autoedit: {self.url} is rate limiting this client (429); retrying once in {wait:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(wait)
                response = self._post(payload)
        return self._graphql_data(response)

    def _post(self, payload: Mapping[str, Any]) -> httpx.Response:
        try:
            return self._http.post(self.endpoint.graphql_url, json=payload)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {one_line(exc) or type(exc).__name__}") from None

    def _graphql_data(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        is_graphql = isinstance(body, dict) and ("data" in body or "errors" in body)
        # dagster-webserver answers 500 with a GraphQL body when a resolver raised: report that error.
        if response.status_code >= 400 and not (response.status_code >= 500 and is_graphql):
            raise http_status_error(
                response.status_code, self.url, http_detail(response), response.headers.get("Retry-After")
            )
        if not is_graphql:
            raise ServerError(f"{self.url} did not answer with GraphQL (is --url the Dagster webserver?)")
        problem = graphql_problem(body)
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
                return ServerError(f"GraphQL error from {self.url}: {one_line(message)}")
            if isinstance(cause, OSError) or type(cause).__name__ in ("TransportConnectionFailed", "ConnectionError"):
                return Unreachable(f"cannot reach {self.url}: {one_line(cause)}")
            cause = cause.__cause__
        # Typed errors from the GraphQL answer: DagsterGraphQLClientError(type name, message).
        if len(exc.args) >= 2:
            kind, message = exc.args[0], exc.args[1]
            if kind in ("RunNotFoundError", "PipelineRunNotFoundError"):
                return NotFound(one_line(message))
            if kind == "UnauthorizedError":
                return AuthError(f"not allowed: {one_line(message)}")
            return ServerError(f"{kind}: {one_line(message)}")
        return ServerError(one_line(exc.args[0] if exc.args else type(exc).__name__))

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
        answer = unwrap(self.execute(RUNS, {"filter": run_filter, "limit": limit}), "runsOrError", "Runs")
        return [RunInfo.from_graphql(node) for node in answer["results"]]

    def upload_run(self, video_id: str, etag: str) -> RunInfo | None:
        """The run the upload sensor requested for this upload (video id + the upload's etag), if any yet."""
        found = self.runs({TAG_VIDEO_ID: video_id, TAG_UPLOAD_ETAG: etag}, job_name=VIDEO_JOB, limit=1)
        return found[0] if found else None

    def launch_run(self, job_name: str, video_id: str, tags: Mapping[str, str] | None = None) -> str:
        """Launch `job_name` for one video (through dagster-graphql's client); returns the run id."""
        all_tags = {PARTITION_TAG: video_id, TAG_VIDEO_ID: video_id, **(tags or {})}
        return self._dagster_call(lambda: self._dagster.submit_job_execution(job_name, tags=all_tags))

    def run_steps(self, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        """A run's status (e.g. ``QUEUED``, ``SUCCESS``) and its steps so far (stepKey, status,
        startTime, endTime), in one request."""
        answer = unwrap(self.execute(RUN_STEPS, {"runId": run_id}), "runOrError", "Run")
        return answer["status"], list(answer.get("stepStats") or ())

    def run_status(self, run_id: str) -> str:
        """A run's status, e.g. ``QUEUED``, ``SUCCESS``."""
        return self.run_steps(run_id)[0]

    def wait_for_run(
        self,
        run_id: str,
        timeout: float,
        on_change: Callable[[str], None] | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Poll until the run has finished; its final status. A RemoteError after `timeout` seconds.

        `on_change` hears each new run status, `on_step` each step once it has finished (in the
        order they finished), one request a poll either way.
        """
        deadline = time.monotonic() + timeout
        last = None
        finished: set[str] = set()
        while True:
            status, steps = self.run_steps(run_id)
            for step in sorted(steps, key=lambda s: s.get("endTime") or 0.0):
                if step.get("status") in STEP_FINISHED and step["stepKey"] not in finished:
                    finished.add(step["stepKey"])
                    if on_step:
                        on_step(step)
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

    # ---------------------------------------------------------------------------- backfill

    def backfill_selector(self, job_name: str) -> dict[str, Any]:
        """The partition set selector of `job_name` (its code location, repository and partition set),
        in one small query; a RemoteError unless exactly one repository serves that job's partition set,
        so a backfill never names another code location's job."""
        answer = unwrap(self.execute(BACKFILL_TARGETS), "repositoriesOrError", "RepositoryConnection")
        found = [
            {
                "partitionSetName": partition_set["name"],
                "repositorySelector": {
                    "repositoryLocationName": node["location"]["name"],
                    "repositoryName": node["name"],
                },
            }
            for node in answer.get("nodes") or ()
            for partition_set in node.get("partitionSets") or ()
            if partition_set.get("pipelineName") == job_name
        ]
        if not found:
            raise ServerError(f"{self.url} serves no partitioned `{job_name}`: is this AutoEditTATE, and up to date?")
        if len(found) > 1:
            where = ", ".join(sorted(f["repositorySelector"]["repositoryLocationName"] for f in found))
            raise ServerError(f"{self.url} serves `{job_name}` from several code locations ({where}): not backfilling")
        return found[0]

    def launch_backfill(
        self,
        job_name: str,
        video_ids: Sequence[str] | None,
        *,
        title: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """A job backfill of `job_name` over `video_ids` (None: every video): one run per video, the
        job's own tags on each (plus `tags`); the backfill id."""
        if video_ids is not None and not video_ids:
            raise UsageError("nothing to backfill: no videos selected")
        params: dict[str, Any] = {
            "selector": self.backfill_selector(job_name),
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        if video_ids is None:
            params["allPartitions"] = True  # the server lists the `videos` partitions when it launches
        else:
            params["partitionNames"] = list(video_ids)
        if title:
            params["title"] = title
        answer = self.execute(LAUNCH_BACKFILL, {"params": params})
        result = answer.get("launchPartitionBackfill") or {}
        if result.get("__typename") == "PartitionKeysNotFoundError":
            unknown = sorted(result.get("partitionKeys") or ())
            raise NotFound(f"unknown video{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        return unwrap(answer, "launchPartitionBackfill", "LaunchBackfillSuccess")["backfillId"]

    def backfill(self, backfill_id: str, *, full: bool = True) -> dict[str, Any]:
        """A backfill's state: a job backfill's partitions counted by their run's status (`partitions_by_status`,
        NOT_STARTED for those without a run yet), an asset backfill's counts per asset (`assets`); with
        `full`, also its partition names and runs (at most 1,000), else those are None and []."""
        answer = unwrap(
            self.execute(BACKFILL, {"id": backfill_id, "full": full}), "partitionBackfillOrError", "PartitionBackfill"
        )
        assets = {}
        for item in (answer.get("assetBackfillData") or {}).get("assetBackfillStatuses") or ():
            if item.get("__typename") == "AssetPartitionsStatusCounts":
                assets[asset_name(item["assetKey"]["path"])] = {
                    "targeted": item["numPartitionsTargeted"],
                    "in_progress": item["numPartitionsInProgress"],
                    "materialized": item["numPartitionsMaterialized"],
                    "failed": item["numPartitionsFailed"],
                }
        counts = {c["runStatus"]: c["count"] for c in answer.get("partitionStatusCounts") or ()}
        runs = []
        for node in answer.get("runs") or ():
            run = RunInfo.from_graphql(node)
            runs.append({**run.to_json(), "video_id": run.tags.get(PARTITION_TAG)})
        return {
            "backfill_id": answer["id"],
            "status": answer["status"],
            "title": answer.get("title"),
            "kind": "asset" if answer.get("isAssetBackfill") else "job",
            "job": answer.get("jobName"),
            "partitions": answer.get("partitionNames"),
            "num_partitions": answer.get("numPartitions"),
            "partitions_by_status": dict(sorted(counts.items(), key=lambda item: -item[1])),
            "created": answer.get("timestamp"),
            "ended": answer.get("endTimestamp"),
            "error": (answer.get("error") or {}).get("message"),
            "runs": runs,
            "assets": assets,
        }

    def wait_for_backfill(
        self, backfill_id: str, timeout: float, on_change: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll (counts only, one small request a poll) until the backfill has ended; then its full state."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            info = self.backfill(backfill_id, full=False)
            progress = (
                info["status"],
                tuple(info["partitions_by_status"].items()),
                tuple(map(str, info["assets"].values())),
            )
            if progress != last and on_change:
                on_change(info)
            last = progress
            if info["status"] in BACKFILL_FINISHED:
                return self.backfill(backfill_id)
            if time.monotonic() >= deadline:
                raise RemoteError(f"backfill {backfill_id} still {info['status']} after {timeout:.0f} s")
            time.sleep(self.poll_seconds)
