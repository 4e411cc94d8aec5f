"""TensorBoard colours lines by run, so drift at several lags reads at a glance only when every lag
is a run of its own (the ``add_scalars`` convention): ``drift/grad/overlap_lag100`` is written as
the tag ``drift/grad/overlap`` of the run ``<log_dir>/lag100``. The chart ``drift/grad/overlap``
then holds one coloured line per lag, named in its legend, also with several runs side by side.

Only TensorBoard's events are split; every other logger, and ``trainer.callback_metrics``, keep the
flat names (``drift/grad/overlap_lag100``), which EarlyStopping can monitor.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

LAG_TAG = re.compile(r"^(?P<tag>.+)_lag(?P<lag>\d+)$")
LAG_RUN = "lag{lag}"  # the run folder of one lag, inside the run's log directory


def split_by_lag(metrics: dict[str, float]) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """(the metrics without a lag, {lag: {tag without "_lag<L>": value}})."""
    plain: dict[str, float] = {}
    by_lag: dict[int, dict[str, float]] = {}
    for name, value in metrics.items():
        match = LAG_TAG.match(name)
        if match:
            by_lag.setdefault(int(match["lag"]), {})[match["tag"]] = value
        else:
            plain[name] = value
    return plain, by_lag


class LagRuns:
    """One open SummaryWriter per (log directory, lag), closed at the end of a fit.

    Writers stay open between writes: a fresh SummaryWriter per write would start a new event file
    each time. Each write is flushed, so a live TensorBoard sees it at once.
    """

    def __init__(self) -> None:
        self.writers: dict[tuple[str, int], SummaryWriter] = {}

    def write(self, log_dir: str | Path, by_lag: dict[int, dict[str, float]], step: int) -> None:
        for lag, scalars in by_lag.items():
            key = (str(log_dir), lag)
            if key not in self.writers:
                self.writers[key] = SummaryWriter(str(Path(log_dir) / LAG_RUN.format(lag=lag)))
            writer = self.writers[key]
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            writer.flush()

    def close(self, log_dir: str | Path) -> None:
        """Closes the writers of one log directory (a later write opens a new event file there)."""
        for key in [key for key in self.writers if key[0] == str(log_dir)]:
            self.writers.pop(key).close()


LAG_RUNS = LagRuns()  # one per process: every callback of a run writes its lags through the same writers
