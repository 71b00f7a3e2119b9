"""The reversible pseudonym mapping: encrypted at rest, read only by audited re-identification."""

from gateway.deid.mapping import MappingCipher, load_cipher, save_mapping
from gateway.deid.reidentify import reidentify

__all__ = ["MappingCipher", "load_cipher", "reidentify", "save_mapping"]
