"""The `pacs-gateway` command line."""
