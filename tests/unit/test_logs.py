"""Log lines: JSON or text, with the bound request fields, never an exception's message."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import strawberry

from gateway.core.enums import LogFormat
from gateway.core.errors import ConfigError
from gateway.core.logs import JsonFormatter, TextFormatter, bind, bound
from gateway.core.settings import parse_settings
from resolvers.metrics import OperationMetrics


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO]]]:
    logger = logging.getLogger("tests.logs")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def test_json_lines_carry_bound_fields_and_extras(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(JsonFormatter())
    with bind(request_id="r-1", caller="user:7"):
        logger.info("graphql %s", "query", extra={"operation": "Q", "duration_ms": 12.5})
        assert bound() == {"request_id": "r-1", "caller": "user:7"}
    logger.info("after")
    first, second = (json.loads(line) for line in handler.stream.getvalue().splitlines())
    assert first["message"] == "graphql query" and first["level"] == "INFO"
    assert first["request_id"] == "r-1" and first["caller"] == "user:7"
    assert first["operation"] == "Q" and first["duration_ms"] == 12.5
    assert first["ts"].endswith("+00:00")
    assert "request_id" not in second  # unbound when the request ended


def _fail_with(parts: list[str]) -> None:
    raise ValueError("".join(parts))  # a message quoting values, as a library's might


def test_an_exception_is_its_type_and_stack_never_its_message(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    for formatter in (JsonFormatter(), TextFormatter()):
        handler.setFormatter(formatter)
        handler.stream.seek(0)
        handler.stream.truncate()
        try:
            _fail_with(["DO", "E^JO", "HN 1.2.8", "40.99"])
        except ValueError:
            logger.exception("failed")
        text = handler.stream.getvalue()
        assert "ValueError" in text and "test_logs.py" in text
        assert "DOE^JOHN" not in text and "1.2.840.99" not in text


def test_text_lines_are_readable(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(TextFormatter())
    with bind(request_id="r-2"):
        logger.info("hello", extra={"duration_ms": 3})
    line = handler.stream.getvalue().strip()
    assert " INFO tests.logs: hello" in line and line.endswith("request_id=r-2 duration_ms=3")


def test_logging_settings() -> None:
    assert parse_settings({}, {}).logging.format == LogFormat.TEXT
    cfg = parse_settings({"logging": {"format": "json", "level": "warning"}}, {}).logging
    assert cfg.format == LogFormat.JSON and cfg.level == "WARNING"
    for bad, key in (
        ({"format": "xml"}, "logging.format"),
        ({"level": "LOUD"}, "logging.level"),
        ({"colour": True}, "logging.colour"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_settings({"logging": bad}, {})


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        logging.getLogger("tests_logs_resolver").info("inside")
        return "hi"


SCHEMA = strawberry.Schema(query=Query, extensions=[OperationMetrics])


def test_each_operation_logs_one_line_with_its_request(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    _, handler = captured
    handler.setFormatter(JsonFormatter())
    for name in ("resolvers.operations", "tests_logs_resolver"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    request = SimpleNamespace(headers={"x-request-id": "abc-123"})
    response = SimpleNamespace(headers={}, status_code=200)
    context = SimpleNamespace(
        request=request, response=response, caller=SimpleNamespace(actor="user:42")
    )
    try:
        result = asyncio.run(SCHEMA.execute("query Hello { hello }", context_value=context))
    finally:
        for name in ("resolvers.operations", "tests_logs_resolver"):
            logging.getLogger(name).removeHandler(handler)
    assert result.data == {"hello": "hi"}
    inside, done = (json.loads(line) for line in handler.stream.getvalue().splitlines())
    assert inside["request_id"] == "abc-123" and inside["caller"] == "user:42"
    assert done["message"] == "graphql query" and done["operation"] == "Hello"
    assert done["errors"] == 0 and done["duration_ms"] >= 0
    assert response.headers["X-Request-ID"] == "abc-123"
