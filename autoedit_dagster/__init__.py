"""AutoEditTATE: automatic video editing (silence cut, shot detection, 9:16 reframe) on Dagster."""

__version__ = "0.1.0"
