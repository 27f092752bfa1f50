"""Structured logs: one JSON object per line, or plain text for local use.

Every line carries `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`, `run_id`,
`video_id` and `step` (null where they do not apply), then `job` and `event` (the Dagster event
type) for Dagster records, the fields passed with `extra=` (the gateway's method, path, status,
duration_ms, ...), and `exc` with the traceback when there is one. Dagster records get their run
id, step and job from the record's Dagster metadata and the video id from the run's
`dagster/partition` tag (the `videos` partition).

Environment: AUTOEDIT_LOG_FORMAT=json|text (default json), read when a formatter is built.

The code location's run workers, in $DAGSTER_HOME/dagster.yaml (Dagster hands this block to
`logging.config.dictConfig`; Dagster's own events are logged at DEBUG):

    python_logs:
      python_log_level: INFO
      dagster_handler_config:
        handlers:
          autoedit:
            class: logging.StreamHandler
            stream: ext://sys.stdout
            level: DEBUG
            formatter: autoedit
        formatters:
          autoedit:
            (): autoedit_dagster.gateway.logs.LogFormatter

The gateway calls `configure_logging` itself (`autoedit gateway --log-level`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("json", "text")
PARTITION_TAG = "dagster/partition"
_DAGSTER_ATTRS = {"dagster_meta", "dagster_event", "dagster_event_batch_metadata"}
# uvicorn adds `color_message` (the message with ANSI colours) to its records.
_STANDARD_ATTRS = (
    set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"} | _DAGSTER_ATTRS
)


def log_format_from_env(value: str | None = None) -> str:
    """`json` or `text`: `value`, else AUTOEDIT_LOG_FORMAT, else json."""
    chosen = (value or os.environ.get("AUTOEDIT_LOG_FORMAT") or "json").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"AUTOEDIT_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured content of a record, Dagster's or anyone's, in a fixed key order."""
    meta = getattr(record, "dagster_meta", None)
    fields: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname, "logger": record.name}
    if isinstance(meta, dict):
        event = meta.get("dagster_event")
        tags = meta.get("job_tags") or {}
        video_id = tags.get(PARTITION_TAG) or (getattr(event, "partition", None) if event is not None else None)
        fields.update(
            message=meta.get("orig_message") or record.getMessage(),
            run_id=meta.get("run_id"),
            video_id=video_id,
            step=meta.get("step_key") or (getattr(event, "step_key", None) if event is not None else None),
            job=meta.get("job_name"),
        )
        if event is not None:
            fields["event"] = event.event_type_value
    else:
        fields.update(
            message=record.getMessage(),
            run_id=getattr(record, "run_id", None),
            video_id=getattr(record, "video_id", None),
            step=getattr(record, "step", None),
        )
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and key not in fields and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc"] = record.exc_text
        return json.dumps(fields, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [run video step] message key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        context = " ".join(
            f"{name}={str(fields[key])[:8] if key == 'run_id' else fields[key]}"
            for key, name in (("run_id", "run"), ("video_id", "video"), ("step", "step"))
            if fields.get(key)
        )
        rest = " ".join(
            f"{k}={v}" for k, v in fields.items()
            if k not in {"time", "level", "logger", "message", "run_id", "video_id", "step"} and v is not None
        )  # fmt: skip
        line = f"{fields['time']} {fields['level']:<7} {fields['logger']}"
        line += f" [{context}]" if context else ""
        line += f" {fields['message']}" + (f"  {rest}" if rest else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class LogFormatter(logging.Formatter):
    """JSON or text as AUTOEDIT_LOG_FORMAT says (or `format=`): the one to name in dagster.yaml."""

    def __init__(self, format: str | None = None) -> None:  # `format` is the dictConfig key name
        super().__init__()
        self.format_name = log_format_from_env(format)
        self._inner: logging.Formatter = JsonFormatter() if self.format_name == "json" else TextFormatter()

    def format(self, record: logging.LogRecord) -> str:
        return self._inner.format(record)


def configure_logging(level: str = "INFO", format: str | None = None, stream: IO[str] | None = None) -> None:
    """Route the root logger (and uvicorn's, which propagate to it) through one `LogFormatter` handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogFormatter(format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every upstream request at INFO with its full URL: GraphQL GETs carry the query
    # and its variables in the query string. The gateway logs its own access line instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
