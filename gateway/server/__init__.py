"""The top floor: the ASGI app and the command line."""
