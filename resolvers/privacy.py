"""The one choke point for patient identity in the API.

Every field that exposes who a patient is (ID, name, birth date, sex) returns
its value through `identity()`. Today every caller may see it; role checks and
the access audit trail will be added here, and only here.
"""

from __future__ import annotations

from typing import TypeVar

from resolvers.context import Info

T = TypeVar("T")


def identity(info: Info, field: str, value: T) -> T:
    """Return `value` of identity attribute `field` if the caller may see it."""
    _ = (info.context.caller, field)  # the place for role checks and audit events
    return value
