"""Fixtures for the deploy/ tests: the real PostgreSQL service (testsupport/services.py).

Imported by name rather than through `pytest_plugins`, which pytest accepts only in the
top-level conftest.
"""

from testsupport.services import postgres_database  # noqa: F401  (fixtures are found by name)
