"""The quadratic protocol: gradient descent on a diagonal quadratic, where every basis has a closed form.

config.py  the ``quadratic:`` section    runner.py  the run
"""

from loclin.callbacks.keys import RECOVERY_PREFIX
from loclin.protocols.quadratic.config import validate_quadratic
from loclin.protocols.registry import Protocol, register

register(
    Protocol(
        "quadratic",
        "loclin.protocols.quadratic.runner:run_quadratic",
        validate_quadratic,
        wrote=lambda s: "krylov_exact" in s.get("curves", {}).get(RECOVERY_PREFIX, {}),
    )
)
