"""python analyze.py RUN [RUN …]: ``loclin-analyze`` in a checkout (the code is loclin/analyze.py)."""

import sys

from loclin.analyze import main

if __name__ == "__main__":
    sys.exit(main())
