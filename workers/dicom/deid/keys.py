"""Keyed, deterministic replacements: UIDs, patient pseudonyms and date shifts.

Implements the "U" action of DICOM PS3.15 Annex E (Table E.1-1: "replace with a
non-zero length UID that is internally consistent within a set of Instances")
as HMAC-SHA256(key, project, UID) read as an integer under the `2.25` root
(PS3.5 Annex B.2, UUID-derived UIDs: at most 39 digits, so at most 44 characters).
The same key, project and UID always give the same new UID, so a study
de-identified twice, or found in two archives, gets the same UIDs; without the
key nobody can link a new UID to the original. Patient pseudonyms and the date
shift of the Retain Longitudinal Temporal Information Modified Dates Option
(PS3.15 E.3.6) are derived the same way, one per patient and project.
"""

from __future__ import annotations

import hashlib
import hmac

_UID_BITS = 128
_PSEUDONYM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, no I L O U
SHIFT_MIN_DAYS = 365
SHIFT_SPAN_DAYS = 3650


def _mac(key: str, *parts: str) -> bytes:
    msg = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key.encode("utf-8"), msg, hashlib.sha256).digest()


def new_uid(key: str, project: str, uid: str) -> str:
    """The replacement of `uid`: `2.25.<128-bit integer>` (PS3.5 B.2), at most 44 characters."""
    value = int.from_bytes(_mac(key, "uid", project, uid.strip().rstrip("\x00"))[:16], "big")
    return f"2.25.{value}"


def pseudonym(key: str, project: str, patient_id: str, issuer: str = "") -> str:
    """A stable patient pseudonym for `project`: "ANON" plus 16 base32 characters."""
    digest = _mac(key, "patient", project, issuer, patient_id)
    number = int.from_bytes(digest[:10], "big")
    chars = []
    for _ in range(16):
        number, rem = divmod(number, 32)
        chars.append(_PSEUDONYM_ALPHABET[rem])
    return "ANON" + "".join(chars)


def date_shift_days(key: str, project: str, patient_id: str, issuer: str = "") -> int:
    """The whole-day shift (negative, 1 to 11 years back) applied to every date of a patient."""
    number = int.from_bytes(_mac(key, "shift", project, issuer, patient_id)[:8], "big")
    return -(SHIFT_MIN_DAYS + number % SHIFT_SPAN_DAYS)
