"""The random-search protocol (docs/science.md 8): perturbations at points of the first phase.

config.py  the ``random_search:`` section    probe.py  the probe    report.py  its tables and figures
"""

from loclin.callbacks.keys import RANDOM_SEARCH_POINTS
from loclin.protocols.random_search.config import validate_random_search
from loclin.protocols.registry import Protocol, lm_sources, register

register(
    Protocol(
        "random_search",
        "loclin.protocols.random_search.probe:run_random_search",
        validate_random_search,
        lm_sources,
        "loclin.protocols.random_search.probe:Probe",
        lambda s: RANDOM_SEARCH_POINTS in s.get("curves", {}),
        whole_vectors=True,
    )
)
