"""PACS adapters, one package per kind, behind `gateway.sources.base.PacsSource`.

A kind is registered in one place: its `SourceKind` member in `gateway.core.enums`, which
names the adapter class; `gateway.sources.registry` builds adapters from it.
"""
