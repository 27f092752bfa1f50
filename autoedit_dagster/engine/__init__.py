"""The media engine: plain functions on files and values, no Dagster (a lint rule holds it)."""
