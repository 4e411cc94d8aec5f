"""The recovery protocol (docs/science.md 5–7): train, degrade, recover, then the static
bases, the update prefixes P_m and their nulls.

    config.py  the ``recovery:`` section and its checks    hooks.py  what it adds to the phased runner
"""

from loclin.callbacks.keys import RECOVERY_TABLE
from loclin.protocols.recovery.config import validate_recovery
from loclin.protocols.registry import PHASED, Protocol, lm_sources, register

register(
    Protocol(
        "recovery",
        PHASED,
        validate_recovery,
        lm_sources,
        "loclin.protocols.recovery.hooks:Recovery",
        lambda s: RECOVERY_TABLE in s.get("curves", {}),
        whole_vectors=True,
    )
)
