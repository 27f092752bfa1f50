"""Dagster's GraphQL schema answering an httpx client in-process: no webserver, the real code location.

`served(instance, workspace)` opens the code location of `workspace.yaml` (its own code server, as
the webserver and daemon load it) on `instance`; `transport(instance, process)` is an
`httpx.MockTransport` that executes each request's document on the pinned schema, so
`AutoEditClient(url, transport=...)` sends exactly what it sends a webserver. Used by the backfill
tests and `bench.backfill_cli`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.schema import create_schema

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def served(
    instance: dg.DagsterInstance, workspace: Path = REPO / "workspace.yaml"
) -> Iterator[WorkspaceProcessContext]:
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as process:
        yield process


def transport(instance: dg.DagsterInstance, process: WorkspaceProcessContext) -> httpx.MockTransport:
    schema = create_schema()

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        context = WorkspaceRequestContext(
            instance=instance, current_workspace=process.get_current_workspace(), process_context=process,
            version="", source=None, read_only=False,
        )  # fmt: skip
        result = asyncio.run(schema.execute_async(body["query"], context_value=context,
                                                  variable_values=body.get("variables")))  # fmt: skip
        payload: dict = {"data": result.data}
        if result.errors:
            payload["errors"] = [{"message": str(error)} for error in result.errors]
        return httpx.Response(200, json=payload)

    return httpx.MockTransport(handle)
