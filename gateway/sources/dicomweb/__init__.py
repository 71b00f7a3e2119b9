"""The DICOMweb adapter (QIDO-RS, WADO-RS, STOW-RS), with per-archive dialects."""
