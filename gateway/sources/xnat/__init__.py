"""The XNAT adapter over XNAT's REST API."""
