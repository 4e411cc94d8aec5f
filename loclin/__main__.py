"""python -m loclin COMMAND …: the ``loclin`` command (loclin/cli.py)."""

import sys

from loclin.cli import main

sys.exit(main())
