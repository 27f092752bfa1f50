"""Tags on runs, shared by the sensors, the assets, the jobs and the remote commands.

`autoedit/kind=render` is what the run queue's tag limit counts (deploy/dagster.yaml). A backfill
of assets runs as Dagster's implicit asset job, which has no tags of its own: the backfill must
carry the tag itself, or its runs bypass the limit.

The upload sensor tags each run with the video id and the upload (key and etag) it is for; the
run's `source_video` step claims the id for that upload key (`partitions.claim_video_id`).
"""

RENDER_RUN_TAGS = {"autoedit/kind": "render"}

TAG_VIDEO_ID = "autoedit/video_id"
TAG_UPLOAD_KEY = "autoedit/upload_key"
TAG_UPLOAD_ETAG = "autoedit/upload_etag"
