"""The GraphQL documents the installed Dagster UI sends, read from its own bundle, and timed.

The webapp (dagster_webserver/webapp/build) ships source maps holding the UI's sources; every
`gql` template there is parsed for its operations and fragments, so a query is sent exactly as
the UI of the installed version writes it (fragments resolved by name), not as a hand copy.

- `AssetGraphLiveQuery` (the asset graph's live data, for every asset key in the view): asked
  for all asset keys of the code location, as the global asset graph does;
- a video's partition page (`/assets/<key>?view=partitions&partition=<video>`):
  `AssetPartitionDetailQuery`, `AssetPartitionStaleQuery` and `PartitionHealthQuery` (the
  partition bar), for one asset and one video.
"""

from __future__ import annotations

import functools
import glob
import json
import re
import time
from pathlib import Path

import httpx

BUNDLE = Path(__import__("dagster_webserver").__file__).parent / "webapp" / "build" / "_next" / "static" / "chunks"
_DEFINITION = re.compile(r"\b(query|fragment|mutation)\s+(\w+)\s*(?:\([^)]*\))?\s*(?:on\s+\w+)?\s*\{")


def _split(template: str) -> list[tuple[str, str, str]]:
    """(kind, name, text) of each definition in one gql template (braces balanced)."""
    template = re.sub(r"\$\{[^}]*\}", "", template)
    out, i = [], 0
    while (match := _DEFINITION.search(template, i)) is not None:
        start, depth, j = match.start(), 0, match.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(template[j], 0)
            j += 1
            if depth == 0:
                break
        out.append((match.group(1), match.group(2), template[start:j]))
        i = j
    return out


@functools.cache
def definitions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in glob.glob(str(BUNDLE / "*.js.map")):
        try:
            sources = json.loads(Path(name).read_text()).get("sourcesContent") or []
        except (ValueError, OSError):
            continue
        for content in sources:
            for template in re.findall(r"gql`(.*?)`", content or "", re.S):
                for _, definition, text in _split(template):
                    found.setdefault(definition, text)
    return found


def document(operation: str) -> str:
    """`operation` and every fragment it uses, as the installed UI sends it."""
    known, todo, parts = definitions(), [operation], {}
    while todo:
        name = todo.pop()
        if name in parts:
            continue
        parts[name] = known[name]
        todo += [f for f in re.findall(r"\.\.\.\s*(\w+)", known[name]) if f not in parts and f in known]
    return "\n".join(parts.values())


def _without(text: str, field: str) -> str:
    """`text` with the selection `field { ... }` removed (braces balanced)."""
    start = text.index(field)
    depth, j = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
        if depth == 0:
            return text[:start] + text[j:]


def timed(url: str, operation: str, variables: dict, query: str | None = None) -> dict:
    start = time.perf_counter()
    response = httpx.post(
        f"{url}/graphql", json={"query": query or document(operation), "variables": variables,
                                "operationName": operation}, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"{operation}: {response.status_code} {str(body.get('errors'))[:300]}")
    return {"seconds": seconds, "bytes": len(response.content)}


def asset_keys(url: str) -> list[dict]:
    answer = httpx.post(f"{url}/graphql", json={"query": "{ assetNodes { assetKey { path } } }"}, timeout=120)
    return [node["assetKey"] for node in answer.json()["data"]["assetNodes"]]


def graph_query(url: str) -> dict:
    return timed(url, "AssetGraphLiveQuery", {"assetKeys": asset_keys(url)})


def graph_query_without_check_partitions(url: str) -> dict:
    """A diagnostic, not what the UI sends: the same document without the checks' per-partition
    statuses (`partitionStatuses` of AssetCheckLiveFragment), to see what they cost."""
    query = _without(document("AssetGraphLiveQuery"), "partitionStatuses")
    return timed(url, "AssetGraphLiveQuery", {"assetKeys": asset_keys(url)}, query=query)


def partition_page(url: str, asset: list[str], partition: str) -> dict:
    """The partition page's documents one after the other (the UI sends them in parallel)."""
    key = {"path": asset}
    parts = [
        timed(url, "AssetPartitionDetailQuery", {"assetKey": key, "partitionKey": partition}),
        timed(url, "AssetPartitionStaleQuery", {"assetKey": key, "partitionKey": partition}),
        timed(url, "PartitionHealthQuery", {"assetKey": key}),
    ]
    return {"seconds": sum(p["seconds"] for p in parts), "bytes": sum(p["bytes"] for p in parts),
            "slowest": max(p["seconds"] for p in parts)}  # fmt: skip
