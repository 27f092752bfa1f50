"""Tags on runs, shared by the jobs and by the remote commands that launch runs without a job.

`autoedit/kind=render` is what the run queue's tag limit counts (deploy/dagster.yaml). A backfill
of assets runs as Dagster's implicit asset job, which has no tags of its own: the backfill must
carry the tag itself, or its runs bypass the limit.
"""

RENDER_RUN_TAGS = {"autoedit/kind": "render"}
