"""`python -m gateway.server.cli`."""

import sys

from gateway.server.cli.main import main

sys.exit(main())
