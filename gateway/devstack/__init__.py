"""Development tooling: the local PACS stack, the demo and its data. Not part of the product."""
