"""Run `video_job` for one partition the way a production worker does, in a process of its own.

    python -m tests.production.job_runner <partition> [--tags JSON] [--select ASSET ...]

Storage comes from the environment through `build_definitions()` (nothing is passed in), the
instance from `DAGSTER_HOME`. Prints the run id; exits 0 when the run succeeded, 1 otherwise.

Environment read: DAGSTER_HOME, AUTOEDIT_STORAGE, AWS_ENDPOINT_URL and boto3's AWS_* chain.
"""

from __future__ import annotations

import argparse
import json
import sys

import dagster as dg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition")
    parser.add_argument("--tags", default="{}", help="run tags as a JSON object (e.g. the sensor's)")
    parser.add_argument("--select", nargs="*", default=[], help="asset keys (`tate/render`); default: whole job")
    args = parser.parse_args(argv)

    from autoedit_dagster.definitions import build_definitions

    job = build_definitions().resolve_job_def("video_job")
    selection = [dg.AssetKey.from_user_string(key) for key in args.select] or None
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            partition_key=args.partition,
            instance=instance,
            tags=json.loads(args.tags),
            asset_selection=selection,
            raise_on_error=False,
        )
    sys.stdout.write(f"{result.run_id}\n")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
