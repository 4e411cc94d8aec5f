"""What runs: one package per protocol, named by a config's ``protocol`` key.

    protocol       runner                              phase hooks                 config section
    train          train.runner:run_experiment          none                        (the common keys)
    recovery       train.runner:run_experiment          recovery.hooks:Recovery     recovery
    random_search  random_search.probe:run_random_search random_search.probe:Probe   random_search
    quadratic      quadratic.runner:run_quadratic       (not phased)                quadratic
    steer          steer.runner:run_steering            (not phased)                steer

Each package keeps side by side its config section and checks (``config.py``, registered with
``loclin.schema.protocol_section``), its runner or phase hooks, and its report where it has one;
its ``__init__`` registers it in ``loclin.protocols.registry``. The model family (``family:
synthetic`` or ``lora``) is a setting of the phased protocols (``train.config.FAMILIES``,
``train.build.MODEL_FAMILIES``). Adding a protocol is one package and one name below
(docs/design.md).
"""

from loclin.protocols import quadratic, random_search, recovery, steer, train  # noqa: F401  (each registers itself)
