"""The steering protocol (docs/science.md 9): one optimizer step's activation shift against a CAA vector.

config.py      the ``steer:`` section        runner.py  the run        step_shift.py  δ of one step
slopes.py      steering curves, slopes, nulls and power              report.py      its tables and figures
"""

from loclin.protocols.registry import Protocol, register, steer_sources
from loclin.protocols.steer.config import validate_steer

register(
    Protocol(
        "steer",
        "loclin.protocols.steer.runner:run_steering",
        validate_steer,
        steer_sources,
        wrote=lambda s: s.get("kind") == "steer",
    )
)
