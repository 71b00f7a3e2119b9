"""De-identification of DICOM instances: PS3.15 Annex E, Basic Application Level
Confidentiality Profile and its options, with the attribute table kept as data.

    outcome = deidentify(ds, DeidConfig(key, project, frozenset({"CleanDescriptors"})))
    outcome.dataset, outcome.report   # None + report.quarantined for burned-in text
"""

from workers.dicom.deid.engine import (
    DeidConfig,
    DeidOutcome,
    DeidReport,
    deidentify,
    deidentify_bytes,
    identity_of,
)
from workers.dicom.deid.keys import new_uid, pseudonym
from workers.dicom.deid.options import OPTIONS, OptionError, method_codes, parse_options
from workers.dicom.deid.table import EDITION, compile_actions, rows

__all__ = [
    "EDITION",
    "OPTIONS",
    "DeidConfig",
    "DeidOutcome",
    "DeidReport",
    "OptionError",
    "compile_actions",
    "deidentify",
    "deidentify_bytes",
    "identity_of",
    "method_codes",
    "new_uid",
    "parse_options",
    "pseudonym",
    "rows",
]
