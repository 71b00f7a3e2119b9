"""What every job spec offers, and the field checks they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Self

from gateway.core.enums import JobKind, SourceRole
from gateway.core.errors import InvalidInput, shown
from gateway.core.settings import Settings, SourceConfig


class JobSpec(Protocol):
    """A job's input, validated: `parse` refuses a bad one, `as_input` is what the row stores."""

    kind: ClassVar[JobKind]

    @classmethod
    def parse(cls, data: Mapping[str, Any], settings: Settings) -> Self:
        """Validate `data` (the contract's camelCase names); `InvalidInput` names the field."""
        ...

    def as_input(self) -> dict[str, Any]:
        """The stored job input, with the contract's field names."""
        ...

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source the job reads or writes (for the roles policy)."""
        ...


def source_of(
    data: Mapping[str, Any], key: str, settings: Settings, *roles: SourceRole
) -> SourceConfig:
    """The configured source named by `data[key]`, holding one of `roles` when given."""
    value = data.get(key)
    try:
        config = settings.source(value) if isinstance(value, str) else None
    except KeyError:
        config = None
    if config is None:
        raise InvalidInput(f"{key}: unknown source {shown(value)}")
    if roles and not any(config.has_role(r) for r in roles):
        wanted = " or ".join(f"'{r}'" for r in roles)
        raise InvalidInput(f"{key}: source {shown(value)} does not have the role {wanted}")
    return config


def flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    """A boolean field; absent or null means `default`."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{key}: must be a boolean")
    return value


def optional_text(data: Mapping[str, Any], key: str, what: str) -> str | None:
    """A text field that is either absent or non-blank."""
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidInput(f"{key}: must be {what}")
    return value


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without its null fields (stored inputs omit what was not given)."""
    return {k: v for k, v in data.items() if v is not None}
