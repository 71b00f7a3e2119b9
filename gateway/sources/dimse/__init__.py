"""The DIMSE adapter (C-FIND, C-GET, C-MOVE, C-STORE) over pynetdicom."""
