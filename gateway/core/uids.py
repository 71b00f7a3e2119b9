"""UID validity (PS3.5 9.1): the one check every layer uses."""

from __future__ import annotations

import re

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\Z")


def is_uid(value: object) -> bool:
    """True for a valid UID: components of digits without leading zeros, dot-separated, ≤ 64.

    The same rule as pydicom's `UID.is_valid`.
    """
    return isinstance(value, str) and len(value) <= 64 and _UID.match(value) is not None
