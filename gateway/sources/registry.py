"""PACS adapters, one module per kind, behind `gateway.sources.base.PacsSource`."""

from __future__ import annotations

from importlib import import_module

from gateway.core.settings import SourceConfig
from gateway.sources.base import PacsSource

_ADAPTERS = {
    "orthanc": ("gateway.sources.orthanc.source", "OrthancSource"),
    "dicomweb": ("gateway.sources.dicomweb.source", "DicomWebSource"),
    "dimse": ("gateway.sources.dimse.source", "DimseSource"),
    "xnat": ("gateway.sources.xnat.source", "XnatSource"),
}


def build_source(config: SourceConfig) -> PacsSource:
    """The adapter for `config.kind`, constructed from its config."""
    module, name = _ADAPTERS[config.kind]
    cls = getattr(import_module(module), name)
    source: PacsSource = cls(config)
    return source


__all__ = ["PacsSource", "build_source"]
