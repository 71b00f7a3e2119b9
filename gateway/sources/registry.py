"""Builds the adapter of a source, one package per kind, behind `gateway.sources.base.PacsSource`.

A kind is registered in ONE place: its `gateway.core.enums.SourceKind` member, which
names the adapter class by import path (core imports nothing above it).
"""

from __future__ import annotations

from importlib import import_module

from gateway.core.settings import SourceConfig
from gateway.sources.base import PacsSource


def build_source(config: SourceConfig) -> PacsSource:
    """The adapter for `config.kind`, constructed from its config."""
    module, _, name = config.kind.adapter.partition(":")
    cls = getattr(import_module(module), name)
    source: PacsSource = cls(config)
    return source


__all__ = ["PacsSource", "build_source"]
