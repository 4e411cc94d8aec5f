"""python -m loclin.assets list | fetch NAME …"""

import sys

from loclin.assets import main

sys.exit(main())
