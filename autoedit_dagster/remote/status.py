"""`AutoEditClient.video_status`: per video, its runs, each asset's state, its check results and the
files it published, read a page of videos per request so the cost follows the videos asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoedit_dagster.names import PROFILE_NAMES

from .errors import unwrap
from .queries import CHECK_EVENT_FIELDS, RUN_FAILURE_FIELDS, gql_string, latest_runs_fields, video_assets_query
from .records import INTERNAL_LABELS, RunInfo, asset_name, failure_reason

# Videos per status request, and partition keys per id page: bounded documents and answers.
STATUS_PAGE = 25
ID_PAGE = 1000


class VideoStatus:
    """The status half of `AutoEditClient`, which provides `execute`, `require_videos` and `status_page`."""

    def video_status(
        self, video_ids: Sequence[str], runs_per_video: int = 5, *, known: bool = False
    ) -> list[dict[str, Any]]:
        """Per video: latest runs, each partitioned asset's state, check results, output URIs and,
        when its latest run failed, why (`failure`: run id and reason).

        Read `status_page` videos per request (two requests a page: assets and runs, then checks
        and failure reasons),
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
            fields = latest_runs_fields(video_ids, unsettled)
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
            assets: dict[str, dict[str, Any]] = {}
            outputs: dict[str, dict[str, str]] = {}
            materialized_by: dict[tuple[str, ...], str] = {}
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
                materialized_by[path] = event["runId"]
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
                    "failure": None,
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
        answers = [unwrap(data, f"v{index}{suffix}", "Runs")["results"] for suffix in ("p", "b")]
        return all(len(runs) < limit and all(run["status"] == "SUCCESS" for run in runs) for runs in answers)

    @staticmethod
    def _page_runs(data: Mapping[str, Any], index: int, video_id: str, limit: int) -> list[RunInfo]:
        """A video's runs in a status page, newest first: by partition tag, and backfill runs by one-key range."""
        by_id: dict[str, RunInfo] = {}
        for suffix in ("p", "b"):
            answer = unwrap(data, f"v{index}{suffix}", "Runs")
            for node in answer["results"]:
                run = RunInfo.from_graphql(node)
                if suffix == "b" and run.tags.get("dagster/asset_partition_range_end") != video_id:
                    continue
                by_id[run.run_id] = run
        return sorted(by_id.values(), key=lambda r: r.creation_time or 0.0, reverse=True)[:limit]

    def _attach_checks(
        self, videos: list[dict[str, Any]], checks_by_asset: Mapping[tuple[str, ...], Sequence[str]]
    ) -> None:
        """Per video, the check results of the run that materialized each checked asset, and why
        its latest run failed, when it did.

        The checks' results are read from that run's own events (its check evaluations, the only
        events asked for), one aliased `logsForRun` per run: however old the video, and whether its
        checks were recorded unpartitioned (today), in the video's partition (before the archive
        change) or without one (before that). In the same request: each video whose latest run
        failed, the reason (`failure`).
        """
        wanted = [
            (video, path, check, run_id)
            for video in videos
            for path, run_id in video["_materialized_by"].items()
            for check in checks_by_asset.get(path, ())
        ]
        run_ids = list(dict.fromkeys(run_id for *_, run_id in wanted))
        # In the same request: why each video whose latest run failed failed (its failed step's error).
        failed = [
            (video, video["latest_run"]["run_id"])
            for video in videos
            if video["latest_run"] and video["latest_run"]["status"] == "FAILURE"
        ]
        if not wanted and not failed:
            return
        fields = [
            f"l{i}: logsForRun(runId: {gql_string(run_id)}) {{ ... on EventConnection {{ events {{ "
            f"{CHECK_EVENT_FIELDS} }} }} }}"
            for i, run_id in enumerate(run_ids)
        ]
        fields += [
            f"f{i}: runOrError(runId: {gql_string(run_id)}) {{ {RUN_FAILURE_FIELDS} }}"
            for i, (_video, run_id) in enumerate(failed)
        ]
        data = self.execute("query AutoeditChecks {\n" + "\n".join(fields) + "\n}")
        for i, (video, run_id) in enumerate(failed):
            reason = failure_reason(data.get(f"f{i}")) or "no step failed: see the run's logs"
            video["failure"] = {"run_id": run_id, "reason": reason}
        by_run = {
            run_id: _run_checks((data.get(f"l{i}") or {}).get("events") or ()) for i, run_id in enumerate(run_ids)
        }
        for video, path, check, run_id in wanted:
            found = by_run[run_id].get((path, check))
            if found is not None:
                _put_check(video, path, check, run_id, found, _run_status(video, run_id))


def _run_checks(events: Sequence[Mapping[str, Any]]) -> dict[tuple[tuple[str, ...], str], dict[str, Any]]:
    """A run's check events by (asset path, check name): the evaluation, else the plan alone ({})."""
    found: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    for event in events:
        if "evaluation" in event:
            evaluation = event["evaluation"]
            found[(tuple(evaluation["assetKey"]["path"]), evaluation["checkName"])] = evaluation
        elif "checkName" in event:
            found.setdefault((tuple(event["assetKey"]["path"]), event["checkName"]), {})
    return found


def _run_status(video: Mapping[str, Any], run_id: str) -> str | None:
    return next((run["status"] for run in video["runs"] if run["run_id"] == run_id), None)


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
    video: dict[str, Any],
    path: tuple[str, ...],
    check: str,
    run_id: str,
    evaluation: Mapping[str, Any],
    run_status: str | None,
) -> None:
    """One check's result in `video`; a check its run planned and never evaluated gets Dagster's
    word for it: in progress while the run is, execution failed if the run failed, else skipped."""
    if evaluation:
        status = "SUCCEEDED" if evaluation["success"] else "FAILED"
    elif run_status in RUN_IN_PROGRESS:
        status = "IN_PROGRESS"
    else:
        status = "EXECUTION_FAILED" if run_status == "FAILURE" else "SKIPPED"
    video["checks"][f"{asset_name(path)}:{check}"] = {
        "status": status,
        "passed": evaluation.get("success"),
        "severity": evaluation.get("severity"),
        "description": evaluation.get("description"),
        "run_id": run_id,
    }
