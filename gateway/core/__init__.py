"""The bottom layer: settings, errors, enums, UIDs, logging. Imports nothing else of ours."""
