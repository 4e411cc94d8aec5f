"""python train.py …: ``loclin-train`` in a checkout (the code is loclin/train.py).

python train.py --config conf/synthetic.yaml [key=value ...]
python train.py --resume runs/synthetic/version_0
"""

import sys

from loclin.train import main

if __name__ == "__main__":
    sys.exit(main())
