"""loclin: the local linear structure of a network while it trains (README.md).

For your own LightningModule: ``from loclin import GeometryMonitor`` (loclin.monitor); for a Hugging
Face Trainer: ``from loclin.hf import GeometryTrainerCallback``. The rest of the package is the
plumbing behind ``loclin`` / train.py / analyze.py: config, run directories, summaries, plots.

Everything lives under this one name: ``loclin.geometry``, ``loclin.callbacks``,
``loclin.datamodules``, ``loclin.lightning_modules`` and the configs ``loclin.conf``. Installed,
setuptools puts those folders inside the package (pyproject.toml, ``package-dir``). In a checkout
they stay the repository's top-level folders, and a narrow finder maps exactly those five names to
them, so each module has one import name (no ``loclin.loclin``, ``loclin.tests``), walking the
package ends, and a user's own ``callbacks.py`` or a PyPI ``callbacks`` shadows nothing.
``GeometryMonitor`` is imported when first asked for, so ``import loclin.config`` stays light.
"""

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

SUBPACKAGES = ("geometry", "callbacks", "datamodules", "lightning_modules", "conf")

_CHECKOUT = Path(__file__).resolve().parent.parent


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """``loclin.<sub>`` for the five SUBPACKAGES of a checkout: the folder ``<checkout>/<sub>``
    (``conf`` has no ``__init__.py``: a namespace package). Any other name is left to Python."""

    def find_spec(self, fullname: str, path=None, target=None):
        prefix, _, sub = fullname.partition(".")
        if prefix != __name__ or sub not in SUBPACKAGES:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [str(_CHECKOUT)])  # looks up <checkout>/<sub>


if (_CHECKOUT / "geometry" / "__init__.py").is_file() and not (Path(__file__).parent / "geometry").is_dir():
    # first, so this checkout's folders win over another checkout's editable install
    if not any(isinstance(finder, CheckoutFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, CheckoutFinder())


def __getattr__(name: str):
    if name == "GeometryMonitor":
        from loclin.monitor import GeometryMonitor

        return GeometryMonitor
    raise AttributeError(f"module 'loclin' has no attribute {name!r}")


__all__ = ["GeometryMonitor"]
