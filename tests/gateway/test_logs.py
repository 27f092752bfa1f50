"""Structured logs: JSON lines from plain loggers and from a real Dagster run configured by dagster.yaml."""

import io
import json
import logging
from pathlib import Path

import dagster as dg
import pytest

from autoedit_dagster.gateway.logs import JsonFormatter, LogFormatter, TextFormatter, configure_logging

from .upstream_defs import run_video

REQUIRED = {"time", "level", "logger", "message", "run_id", "video_id", "step"}


def make_record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("autoedit.gateway", logging.INFO, __file__, 1, "GET %s %d", ("/runs", 200), None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_the_fixed_fields_and_the_extras() -> None:
    line = JsonFormatter().format(make_record(method="GET", status=200, duration_ms=1.5))
    fields = json.loads(line)
    assert fields.keys() >= REQUIRED and "\n" not in line
    assert fields["message"] == "GET /runs 200" and fields["level"] == "INFO"
    assert (fields["method"], fields["status"], fields["duration_ms"]) == ("GET", 200, 1.5)
    assert fields["run_id"] is None and fields["time"].endswith("Z")


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError" in json.loads(line)["exc"]


def test_format_switch(monkeypatch) -> None:
    monkeypatch.setenv("AUTOEDIT_LOG_FORMAT", "text")
    text = LogFormatter().format(make_record(run_id="0123456789abcdef", video_id="clip-0000abcd", step="render"))
    assert "run=01234567" in text and "video=clip-0000abcd" in text and "GET /runs 200" in text
    assert isinstance(LogFormatter("json")._inner, JsonFormatter)
    monkeypatch.setenv("AUTOEDIT_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="AUTOEDIT_LOG_FORMAT"):
        LogFormatter()
    assert isinstance(LogFormatter("text")._inner, TextFormatter)


def test_configure_logging_routes_uvicorn_through_the_formatter() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", "json", stream=stream)
        logging.getLogger("uvicorn.error").warning("Started server process", extra={"color_message": "\x1b[36m"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    fields = json.loads(stream.getvalue().splitlines()[-1])
    assert fields["message"] == "Started server process" and "color_message" not in fields


def test_configure_logging_keeps_upstream_urls_out_of_the_log() -> None:
    """httpx's per-request INFO line would print GraphQL GET queries and their variables."""
    stream = io.StringIO()
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = (list(root.handlers), root.level, httpx_logger.level)
    try:
        configure_logging("INFO", "json", stream=stream)
        httpx_logger.info('HTTP Request: GET http://upstream/graphql?query=secret "HTTP/1.1 200 OK"')
        httpx_logger.warning("upstream connection reset")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        httpx_logger.setLevel(saved[2])
    assert "secret" not in stream.getvalue()
    assert "upstream connection reset" in stream.getvalue()


@pytest.mark.filterwarnings("ignore:Handling yaml-defined logging:dagster.BetaWarning")
def test_a_dagster_run_logs_json_lines_with_run_video_and_step(tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    (tmp_path / "dagster.yaml").write_text(f"""
python_logs:
  python_log_level: INFO
  dagster_handler_config:
    handlers:
      autoedit:
        class: logging.FileHandler
        filename: {log_file}
        level: DEBUG
        formatter: autoedit
    formatters:
      autoedit:
        (): autoedit_dagster.gateway.logs.LogFormatter
        format: json
telemetry:
  enabled: false
""")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        result = run_video(instance, "clip-0000abcd")
    finally:
        instance.dispose()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines and all(fields.keys() >= REQUIRED for fields in lines)
    assert {fields["run_id"] for fields in lines} == {result.run_id}
    assert {fields["video_id"] for fields in lines} == {"clip-0000abcd"}
    mine = next(fields for fields in lines if fields["message"] == "probed the upload")
    assert (mine["step"], mine["level"], mine["job"]) == ("source_video", "INFO", "video_job")
    events = {fields.get("event") for fields in lines}
    assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION"} <= events
