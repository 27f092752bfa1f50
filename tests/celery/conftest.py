"""Celery tests: the real PostgreSQL and Redis services (testsupport/services.py).

The fixtures are imported by name rather than through `pytest_plugins`, which pytest only
honours in the rootdir's conftest.
"""

from testsupport.services import postgres_database, redis_url  # noqa: F401  (fixtures are found by name)
