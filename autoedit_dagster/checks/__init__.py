"""Asset checks on the renders."""

from .render_checks import build_render_checks

__all__ = ["build_render_checks"]
