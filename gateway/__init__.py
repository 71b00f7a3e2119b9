"""PACS federation gateway."""

__version__ = "0.1.0"
