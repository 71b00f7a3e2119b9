"""Logging: library logs kept free of patient data, and the text or JSON line format.

Request URLs carry query values, and pydicom quotes the element values it
finds invalid; neither may reach a log. `configure_logging` picks readable text
(default) or one JSON object per line (`[logging] format = "json"`); both carry the
fields bound to the current request (`bind`: request id, caller id, operation name) and
those a call passes as `extra` (duration). An exception is written as its type and stack,
never its message (which may quote a value).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pydicom.config
from opentelemetry import trace

from gateway.core.enums import LogFormat

# What a log line may carry besides its message: ids and measures, never patient values.
FIELDS = ("request_id", "caller", "operation", "type", "duration_ms", "status", "errors")
_BOUND: ContextVar[dict[str, Any]] = ContextVar("log_fields", default={})  # noqa: B039 - never mutated


def quiet_libraries() -> None:
    """Libraries that would log URLs log warnings only; pydicom quotes no values at all."""
    for name in ("alembic", "httpx", "httpcore", "pynetdicom", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged in this context (tasks started in it too)."""
    token = _BOUND.set({**_BOUND.get(), **fields})
    try:
        yield
    finally:
        try:
            _BOUND.reset(token)
        except ValueError:  # left in another context (a stream closed elsewhere)
            _BOUND.set({k: v for k, v in _BOUND.get().items() if k not in fields})


def bound() -> dict[str, Any]:
    """The fields bound to the current context."""
    return dict(_BOUND.get())


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out = {k: v for k, v in _BOUND.get().items() if v is not None}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:  # only while tracing is on
        out["trace_id"] = format(span.trace_id, "032x")
    out |= {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}
    return out


def _exception(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[0] is None:
        return None
    kind, _, tb = record.exc_info
    return kind.__name__ + "\n" + "".join(traceback.format_tb(tb))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        exception = _exception(record)
        if exception:
            line["exception"] = exception
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as a text line."""
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None  # the message of an exception stays out
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        exception = _exception(record)
        return text + (f" {extra}" if extra else "") + (f"\n{exception}" if exception else "")


def configure_logging(format: LogFormat | str = LogFormat.TEXT, level: str = "INFO") -> None:
    """Write the root logger's lines to stderr in `format`, from `level` up."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if LogFormat(format) == LogFormat.JSON else TextFormatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level)
