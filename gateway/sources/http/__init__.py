"""What the HTTP adapters share: the client, authentication and multipart bodies."""

USER_AGENT = "pacs-gateway"
# No compression: archives sit on the LAN, and Orthanc, asked for gzip, spends
# ~18 ms compressing each 512 KB instance (and ~10 ms per 400 KB JSON answer).
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
# WADO-RS: Part 10 files as stored, in a multipart/related answer
ACCEPT_DICOM = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
