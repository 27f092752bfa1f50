"""Software-defined assets, per video (`videos` partitions) and across the archive."""

import warnings

import dagster as dg

# Deliberate uses of APIs Dagster still calls beta: BackfillPolicy (one run per video in a
# backfill) and Output(data_version=...) (the upload's sha256 as source_video's version).
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*(backfill_policy|data_version).*")
# ...and partitioned asset checks (preview), so each run checks only its own video's render.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

from ..engine.config import PROFILES
from .analysis import media_analysis, shots, speech_segments
from .catalog import video_catalog
from .ingest import source_video
from .profile_assets import build_profile_assets

ANALYSIS_ASSETS: list[dg.AssetsDefinition] = [source_video, media_analysis, speech_segments, shots]
PROFILE_ASSETS: dict[str, list[dg.AssetsDefinition]] = {
    name: build_profile_assets(profile) for name, profile in PROFILES.items()
}
ALL_ASSETS: list[dg.AssetsDefinition] = [
    *ANALYSIS_ASSETS,
    *(asset for chain in PROFILE_ASSETS.values() for asset in chain),
    video_catalog,
]

__all__ = ["ALL_ASSETS", "ANALYSIS_ASSETS", "PROFILE_ASSETS"]
