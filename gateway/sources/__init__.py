"""PACS adapters, one package per kind, behind `gateway.sources.base.PacsSource`.

A kind is registered in one place: `gateway.sources.registry`.
"""
