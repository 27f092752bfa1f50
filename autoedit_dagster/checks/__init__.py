"""Asset checks on the renders."""

from .render_checks import RENDER_CHECKS, build_render_checks

__all__ = ["RENDER_CHECKS", "build_render_checks"]
