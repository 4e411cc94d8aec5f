"""loclin: the local linear structure of a network while it trains (README.md).

For your own LightningModule: ``from loclin import GeometryMonitor`` (loclin.monitor). The rest of the
package is the plumbing behind train.py and analyze.py: config, run directories, summaries, plots.
``GeometryMonitor`` is imported when first asked for, so ``import loclin.config`` stays light."""


def __getattr__(name: str):
    if name == "GeometryMonitor":
        from loclin.monitor import GeometryMonitor

        return GeometryMonitor
    raise AttributeError(f"module 'loclin' has no attribute {name!r}")


__all__ = ["GeometryMonitor"]
