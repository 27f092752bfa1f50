"""Run config for the assets: the engine's settings models, editable in the UI launchpad.

Each class is the engine's pydantic settings model made a Dagster `Config`, so the defaults
documented in `engine/config.py` are the launchpad's defaults and nothing is written twice.
"""

from typing import TypeVar

import dagster as dg
from pydantic import BaseModel

from ..engine.config import (
    AnalysisSettings,
    EncodeSettings,
    InputLimits,
    OutputSettings,
    ReframeSettings,
    ShotSettings,
    SilenceSettings,
)


class IngestConfig(dg.Config, InputLimits):
    """Limits an upload must meet before anything decodes it."""


class AnalysisConfig(dg.Config, AnalysisSettings):
    """The one decode pass."""


class SilenceConfig(dg.Config, SilenceSettings):
    """Dead-air detection."""


class ShotConfig(dg.Config, ShotSettings):
    """Shot boundary detection."""


class ReframeConfig(dg.Config, ReframeSettings):
    """How the crop follows the subject."""


class OutputConfig(dg.Config, OutputSettings):
    """The output's size and frame rate over the profile's (`autoedit edit --height/--fps/--no-upscale`)."""


class EncodeConfig(dg.Config, EncodeSettings):
    """The encoder's quality and speed over the profile's (`autoedit edit --crf/--preset`)."""


Settings = TypeVar("Settings", bound=BaseModel)


def settings_of(config: dg.Config, model: type[Settings]) -> Settings:
    """The plain engine settings behind a config (the engine takes no Dagster types)."""
    return model.model_validate(config.model_dump())
