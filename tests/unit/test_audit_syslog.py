"""RFC 5424 form of audit events (gateway.auth.syslog.message) and the settings for it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from gateway.auth.syslog import MAX_MESSAGE, Target, message
from gateway.core.settings import ConfigError, parse_settings
from gateway.db.models import AuditEvent

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA SP MSG (the MSG with a UTF-8 BOM)
SYSLOG = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) "
    rb"(?P<msgid>\S+) \[(?P<sd>(?:[^\]\\]|\\.)*)\] \xef\xbb\xbf(?P<msg>.*)$",
    re.DOTALL,
)


def _event(**fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "id": 7,
        "at": datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "actor": "user:42",
        "action": "phi-read",
        "object_type": "operation",
        "object_ref": "Names",
        "outcome": "ok",
        "address": "127.0.0.1",
        "detail": {"count": 2, "refs": ["a" * 24, "b" * 24]},
        "hash": "f" * 64,
    }
    values.update(fields)
    return AuditEvent(**values)


def test_an_event_is_one_rfc5424_message() -> None:
    data = message(_event(), "gw-1", procid="123")
    found = SYSLOG.match(data)
    assert found, data
    assert int(found["pri"]) == 10 * 8 + 5  # security/authorization, notice
    assert found["ts"] == b"2026-12-02T03:04:05.678901Z"
    assert (found["host"], found["app"], found["proc"], found["msgid"]) == (
        b"gw-1",
        b"pacs-gateway",
        b"123",
        b"phi-read",
    )
    assert found["sd"].startswith(b'audit@32473 id="7" actor="user:42" outcome="ok"')
    assert b'hash="' + b"f" * 64 + b'"' in found["sd"]
    body = json.loads(found["msg"])
    assert body["action"] == "phi-read" and body["details"]["count"] == 2 and body["id"] == 7


def test_refusals_are_warnings_and_values_are_escaped() -> None:
    data = message(_event(outcome="refused", object_ref='a"b]c\\d', action="login failed!"), "h")
    found = SYSLOG.match(data)
    assert found, data
    assert int(found["pri"]) == 10 * 8 + 4
    assert found["msgid"] == b"loginfailed!"  # no space in a header field
    assert b'objectRef="a\\"b\\]c\\\\d"' in found["sd"]


def test_an_oversized_event_still_goes_without_its_details() -> None:
    data = message(_event(detail={"refs": ["x" * 24] * 2000}), "h")
    assert len(data) <= MAX_MESSAGE
    found = SYSLOG.match(data)
    assert found and json.loads(found["msg"])["truncated"] is True


def test_targets_and_settings() -> None:
    assert Target.parse("udp://127.0.0.1:5514") == Target("127.0.0.1", 5514)
    assert Target.parse("udp://syslog.example") == Target("syslog.example", 514)
    with pytest.raises(ValueError):
        Target.parse("tcp://127.0.0.1:514")
    ok = parse_settings({"auth": {"audit_syslog": "udp://127.0.0.1:514"}}, {})
    assert ok.auth.audit_syslog == "udp://127.0.0.1:514" and ok.auth.audit_syslog_facility == 10
    for bad in ({"audit_syslog": "http://x"}, {"audit_syslog_facility": 24}):
        with pytest.raises(ConfigError):
            parse_settings({"auth": bad}, {})
