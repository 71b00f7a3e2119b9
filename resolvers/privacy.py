"""The one choke point for patient identity in the API.

Every field that exposes who a patient is (ID, name, birth date, sex, and the
conflicts that quote them) returns its value through `identity()`. Today every
caller may see it; role checks and the access audit trail go into `may_see`,
and only there.
"""

from __future__ import annotations

from typing import Any, TypeVar

from resolvers.context import Info

T = TypeVar("T")


def may_see(caller: Any, field: str) -> bool:
    """Whether `caller` may see identity attribute `field` (everyone, until roles exist)."""
    return True


def identity(info: Info, field: str, value: T) -> T:
    """Return `value` of identity attribute `field` if the caller may see it, else a blank
    of the same shape ("***" for text, an empty list, None)."""
    if may_see(info.context.caller, field):
        return value
    return _blank(value)


def _blank(value: Any) -> Any:
    if isinstance(value, str):
        return "***"
    if isinstance(value, list | tuple):
        return type(value)()
    return None
