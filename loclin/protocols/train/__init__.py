"""The plain phased run: train (and any further phases) with the geometry measured live.

config.py  the phased runner's checks and phase plan     build.py   model, data, callbacks, Trainer
runner.py  the phased runner (run_experiment)            hooks.py   what a protocol adds to it
"""

from loclin.protocols.registry import PHASED, Protocol, lm_sources, register
from loclin.protocols.train.config import validate_phased

register(Protocol("train", PHASED, validate_phased, lm_sources))
