"""The adapters' responses are read in large pieces (httpcore's read size, raised)."""

from __future__ import annotations

import inspect

from httpcore import AsyncHTTP11Connection
from httpcore._async import http11

import gateway.sources.http.client  # noqa: F401  (sets the read size)


def test_httpcore_reads_a_response_a_mebibyte_at_a_time() -> None:
    assert AsyncHTTP11Connection.READ_NUM_BYTES == 1 << 20
    # the attribute is still the one httpcore reads with (not a name it no longer uses)
    assert "self.READ_NUM_BYTES" in inspect.getsource(http11)
