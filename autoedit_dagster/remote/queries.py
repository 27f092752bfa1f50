"""The GraphQL documents the remote commands send, for the schema of the installed dagster-graphql
(1.13), and the Dagster tags they filter runs by."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

SOURCE_ASSET = ("source_video",)
PARTITION_TAG = "dagster/partition"
# Runs of a backfill over assets with a multi-run backfill policy carry a one-key range instead.
RANGE_START_TAG = "dagster/asset_partition_range_start"
BACKFILL_TAG = "dagster/backfill"


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

RUN_STEPS = f"""
query AutoeditRunSteps($runId: ID!) {{
  runOrError(runId: $runId) {{
    {_ERROR_FIELDS}
    ... on Run {{ runId status stepStats {{ stepKey status startTime endTime }} }}
  }}
}}
"""

# A failed run's reason: its step failures' errors (the user's exception inside Dagster's
# wrappers, two causes deep) and the run failure's message; every other event is just its type.
_PYTHON_ERROR = "className message"
RUN_FAILURE_FIELDS = (
    "__typename ... on Run { eventConnection(limit: 5000) { events { __typename "
    "... on ExecutionStepFailureEvent { stepKey error { "
    f"{_PYTHON_ERROR} cause {{ {_PYTHON_ERROR} cause {{ {_PYTHON_ERROR} cause {{ {_PYTHON_ERROR} }} }} }} }} }} "
    "... on RunFailureEvent { message } } } }"
)


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


def latest_runs_fields(video_ids: Sequence[str], indexes: Iterable[int]) -> str:
    return "\n".join(
        f"    r{i}: latestRunForPartition(partition: {gql_string(video_ids[i])}) {{ runId status }}" for i in indexes
    )


def video_assets_query(video_ids: Sequence[str], runs_per_video: int = 5, planned: Iterable[int] = ()) -> str:
    """One document for a page of videos: each asset's latest materialization, each video's runs,
    and for the videos at `planned` indexes each asset's latest planned run (see `_status_page`).
    Nothing in it grows with the archive.
    """
    latest_runs = latest_runs_fields(video_ids, planned)
    run_queries = []
    for i, video_id in enumerate(video_ids):
        for suffix, tag in (("p", PARTITION_TAG), ("b", RANGE_START_TAG)):
            run_filter = f"{{tags: [{{key: {gql_string(tag)}, value: {gql_string(video_id)}}}]}}"
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


# Where a job's partition set lives: the repository selector a job backfill names (a few names per
# code location, nothing that grows with the archive).
BACKFILL_TARGETS = f"""
query AutoeditBackfillTargets {{
  repositoriesOrError {{
    {_ERROR_FIELDS}
    ... on RepositoryConnection {{ nodes {{ name location {{ name }} partitionSets {{ name pipelineName }} }} }}
  }}
}}
"""

LAUNCH_BACKFILL = f"""
mutation AutoeditBackfill($params: LaunchBackfillParams!) {{
  launchPartitionBackfill(backfillParams: $params) {{
    {_ERROR_FIELDS}
    ... on LaunchBackfillSuccess {{ backfillId }}
    ... on PartitionKeysNotFoundError {{ partitionKeys }}
  }}
}}
"""

# A backfill's progress: a job backfill's runs counted by status (`partitionStatusCounts`, one entry
# per status, NOT_STARTED for partitions without a run yet) or an asset backfill's counts per asset
# (`assetBackfillData`, the backfills launched before `autoedit backfill` launched job backfills).
# With $full false (the polls of `--wait`) neither the partition names nor the runs are asked: at
# 10,000 videos those are the bulk of the answer.
BACKFILL = f"""
query AutoeditBackfillStatus($id: String!, $full: Boolean! = true) {{
  partitionBackfillOrError(backfillId: $id) {{
    {_ERROR_FIELDS}
    ... on PartitionBackfill {{
      id status title numPartitions timestamp endTimestamp isAssetBackfill partitionSetName jobName
      partitionNames @include(if: $full)
      error {{ message }}
      partitionStatusCounts {{ runStatus count }}
      runs(limit: 1000) @include(if: $full) {{ {_RUN_FIELDS} }}
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

# A run's check events, the only ones asked of its log (every other event comes back as `{}`).
CHECK_EVENT_FIELDS = (
    "... on AssetCheckEvaluationPlannedEvent { assetKey { path } checkName } "
    "... on AssetCheckEvaluationEvent { evaluation { assetKey { path } checkName success severity description } }"
)


def gql_string(value: str) -> str:
    """A GraphQL string literal (JSON's escaping is valid GraphQL)."""
    return json.dumps(value)
