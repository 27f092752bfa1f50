"""What the UI's asset graph costs the instance, counted in process: `has_dynamic_partition` queries.

    PYTHONPATH=$PWD python -m bench.graph_state --videos 1000 3000 [--repeats 3]

For each size, a SQLite instance is seeded (testsupport/archive.py, on /dev/shm when there is one)
and this checkout's code location is loaded as the webserver loads it (a code server process);
then `AssetGraphLiveQuery` for every asset, exactly as the installed UI writes it
(bench/ui_queries.py), is executed in this process, in a fresh request context each time (as
each HTTP request gets), `--repeats` times. Printed per run: wall and CPU seconds of this
process, and how many times the event log storage was asked `has_dynamic_partition` (Dagster
1.13.27 asks it once per video for each partitioned check's per-partition statuses,
dagster/_core/storage/asset_check_state.py `_valid_partition_key`). The count is read by
wrapping the storage class's method here, in the bench only: it is what grows with the archive,
whatever the machine's load does to the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench import ui_queries
from testsupport.archive import seed_archive, video_ids
from testsupport.servers import Instance

ROOT = Path(__file__).resolve().parents[1]


def measure(root: Path, count: int, repeats: int) -> dict:
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    instance = Instance.create(root)
    start = time.perf_counter()
    with instance.open() as dagster_instance:
        seed_archive(dagster_instance, video_ids(count), video_ids(20, start=count), storage=str(instance.storage))
    seeded = time.perf_counter() - start
    out: dict = {"videos": count, "seed_seconds": seeded, "runs": []}
    with instance.open() as dagster_instance:
        storage = type(dagster_instance.event_log_storage)
        asked = {"n": 0}
        original = storage.has_dynamic_partition

        def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            asked["n"] += 1
            return original(self, *args, **kwargs)

        storage.has_dynamic_partition = counted  # type: ignore[method-assign]
        try:
            target = ModuleTarget("autoedit_dagster.definitions", "defs", str(ROOT), "autoedit")
            with WorkspaceProcessContext(dagster_instance, target) as process:
                keys = [
                    {"path": list(node.key.path)} for node in process.create_request_context().asset_graph.asset_nodes
                ]
                document = ui_queries.document("AssetGraphLiveQuery")
                for _ in range(repeats):
                    asked["n"] = 0
                    wall, cpu = time.perf_counter(), time.process_time()
                    with process.create_request_context() as context:
                        result = execute_dagster_graphql(context, document, {"assetKeys": keys})
                    if result.errors:
                        raise RuntimeError(str(result.errors)[:300])
                    out["runs"].append({
                        "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                        "has_dynamic_partition": asked["n"], "bytes": len(json.dumps(result.data)),
                        "load": os.getloadavg()[0],
                    })  # fmt: skip
        finally:
            storage.has_dynamic_partition = original  # type: ignore[method-assign]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    for count in args.videos:
        with tempfile.TemporaryDirectory(prefix="autoedit-graph-", dir=scratch) as work:
            print(json.dumps(measure(Path(work), count, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
