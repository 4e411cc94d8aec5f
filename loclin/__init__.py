"""loclin: the local linear structure of a network while it trains (README.md).

For your own LightningModule: ``from loclin import GeometryMonitor`` (loclin.monitor); for a Hugging
Face Trainer: ``from loclin.hf import GeometryTrainerCallback``. The rest of the package is the
plumbing behind ``loclin-train`` / train.py and ``loclin-analyze`` / analyze.py: config, run
directories, summaries, plots.

Everything lives under this one name: ``loclin.geometry``, ``loclin.callbacks``,
``loclin.datamodules``, ``loclin.lightning_modules`` and the configs ``loclin.conf``. Installed,
setuptools puts those folders inside the package (pyproject.toml, ``package-dir``); in a checkout
they stay the repository's top-level folders, and this package's path reaches them, so the same
imports work in both and a user's own ``callbacks.py`` or a PyPI ``callbacks`` shadows nothing.
``GeometryMonitor`` is imported when first asked for, so ``import loclin.config`` stays light.
"""

from pathlib import Path

SUBPACKAGES = ("geometry", "callbacks", "datamodules", "lightning_modules", "conf")

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "geometry" / "__init__.py").is_file() and str(_checkout) not in __path__:
    __path__.append(str(_checkout))  # a checkout: loclin.geometry is ./geometry (installed, it is loclin/geometry)


def __getattr__(name: str):
    if name == "GeometryMonitor":
        from loclin.monitor import GeometryMonitor

        return GeometryMonitor
    raise AttributeError(f"module 'loclin' has no attribute {name!r}")


__all__ = ["GeometryMonitor"]
