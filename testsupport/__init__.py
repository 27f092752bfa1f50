"""Helpers shared by tests/ and bench/: generated media (lavfi, espeak-ng, numpy), the services and
servers a production-like run needs (PostgreSQL, Redis, S3 on moto, the webserver and daemon), and
archives seeded at scale. Not part of the installed package."""
