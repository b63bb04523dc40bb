"""``python -m mpc_cli`` runs the ``mpc`` command."""

import sys

from mpc_cli.main import main

sys.exit(main())
