"""Keep library logs and warnings free of patient data.

Request URLs carry query values, and pydicom quotes the element values it
finds invalid; neither may reach a log.
"""

from __future__ import annotations

import logging
import warnings

import pydicom.config


def quiet_libraries() -> None:
    """Libraries that would log URLs log warnings only; pydicom quotes no values at all."""
    for name in ("alembic", "httpx", "httpcore", "pynetdicom", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
