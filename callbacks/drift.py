"""Drift of the rolling basis against lag (SCIENCE.md 4).

Every ``stride`` steps the rolling basis B_t is snapshotted. A snapshot at step s is kept
only while some lag L of the ladder still needs it (s a multiple of L and t − s < L), so
lag L is sampled at the pairs (s, s + L) with s a multiple of L: short lags get many
pairs, long lags fewer but disjoint ones, and at most len(lags) + 1 bases are held
(memory (len(lags) + 1)·D·k·4 bytes, whatever the largest lag).

Each new snapshot B_t is compared with the kept B_s at ladder lags t − s (about
Σ_L stride/L comparisons per snapshot; each reads a D×k basis): overlap ‖B_sᵀB_t‖_F²/k,
Grassmann distance, and stale-basis capture cap(B_s, v_t) of the vector just taken.
Averages over pairs at each lag give the drift curve; the half-life is the lag at which the
mean overlap halves. Every comparison also lands in the drift heatmap (step s against lag).
"""

from __future__ import annotations

import lightning as L
import torch

from callbacks.base import Averages, MeasurementCallback, metric
from callbacks.gradient_window import GradientWindowCallback
from callbacks.rolling_basis import RollingBasisCallback
from geometry import capture, compare_subspaces, half_life, random_capture_baseline

HEADLINE_LAG = 100


class DriftCallback(MeasurementCallback):
    def __init__(self, window: GradientWindowCallback, rolling: RollingBasisCallback, stride: int = 25, lags: tuple[int, ...] = (25, 50, 100, 200, 400)):
        if any(lag % stride for lag in lags):
            raise ValueError(f"every drift lag must be a multiple of the drift stride {stride}, got {list(lags)}")
        self.window = window
        self.rolling = rolling
        self.source = rolling.source
        self.stride = stride
        self.logged_lags = tuple(sorted(lags))
        self.max_lag = self.logged_lags[-1]
        self.ring: list[tuple[int, torch.Tensor]] = []
        self.last_snapshot = -1
        self.averages = Averages()
        self.heatmap: list[tuple[int, int, float]] = []

    @property
    def state_key(self) -> str:
        return f"Drift[{self.source}]"

    def memory_bytes(self) -> int:
        return (len(self.logged_lags) + 1) * self.window.local_dim * self.rolling.k * 4

    def _still_needed(self, snapshot_step: int, now: int) -> bool:
        return any(snapshot_step % lag == 0 and now - snapshot_step < lag for lag in self.logged_lags)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step = self.rolling.current_step
        fresh = step == self.window.latest_step[self.source]
        if not fresh or step % self.stride or step == self.last_snapshot:
            return
        self.last_snapshot = step
        basis = self.rolling.current_basis
        vector = self.window.latest(self.source)
        reduce = self.window.shard.reduce
        self.averages.add("stale_capture_lag0", capture(basis, vector, reduce))
        logs = {}
        for past_step, past_basis in self.ring:
            lag = step - past_step
            if lag not in self.logged_lags:
                continue
            comparison = compare_subspaces(past_basis, basis, reduce)
            stale = capture(past_basis, vector, reduce)
            self.heatmap.append((past_step, step, comparison["overlap"]))
            self.averages.add(f"overlap_lag{lag}", comparison["overlap"])
            self.averages.add(f"grassmann_lag{lag}", comparison["grassmann"])
            self.averages.add(f"stale_capture_lag{lag}", stale)
            logs[f"drift/{self.source}/overlap_lag{lag}"] = comparison["overlap"]
            logs[f"drift/{self.source}/stale_capture_lag{lag}"] = stale
            logs[f"drift/{self.source}/grassmann_lag{lag}"] = comparison["grassmann"]
        self.ring = [(s, b) for s, b in self.ring if self._still_needed(s, step)]
        if self._still_needed(step, step):
            self.ring.append((step, basis))
        self.log_scalars(trainer, logs, step)

    def curve(self) -> dict[str, list[float]]:
        lags = [lag for lag in self.logged_lags if self.averages.count(f"overlap_lag{lag}")]
        return {
            "lags": [0] + lags,
            "overlap": [1.0] + [self.averages.mean(f"overlap_lag{lag}") for lag in lags],
            "overlap_std": [0.0] + [self.averages.std(f"overlap_lag{lag}") for lag in lags],
            "grassmann": [0.0] + [self.averages.mean(f"grassmann_lag{lag}") for lag in lags],
            "stale_capture": [self.averages.mean("stale_capture_lag0")] + [self.averages.mean(f"stale_capture_lag{lag}") for lag in lags],
            "pairs": [self.averages.count("stale_capture_lag0")] + [self.averages.count(f"overlap_lag{lag}") for lag in lags],
        }

    def summary(self) -> dict:
        curve = self.curve()
        if len(curve["lags"]) < 2:
            return {}
        src = self.source
        baseline = random_capture_baseline(self.rolling.k, self.window.dim)
        metrics = {
            f"{src}.half_life": metric(half_life(curve["lags"][1:], curve["overlap"][1:]), "half_life (SCIENCE.md 4): lag where mean overlap falls to 0.5, steps; inf = beyond the largest lag"),
            f"{src}.max_lag": metric(float(curve["lags"][-1]), "largest lag on the drift curve, steps"),
        }
        for lag, overlap_value, stale in zip(curve["lags"][1:], curve["overlap"][1:], curve["stale_capture"][1:]):
            note = "; < 0.5 at lag 100 reads as substantial drift" if lag == HEADLINE_LAG else ""
            metrics[f"{src}.overlap_lag{lag}"] = metric(overlap_value, f"overlap (SCIENCE.md 4) ‖B_sᵀB_t‖²/k at lag {lag}{note}", baseline)
            metrics[f"{src}.stale_capture_lag{lag}"] = metric(stale, f"stale-basis capture (SCIENCE.md 4) cap(B_s, v_(s+{lag})), energy", baseline)
        s, t, ov = zip(*self.heatmap) if self.heatmap else ((), (), ())
        return {"metrics": metrics, "curves": {f"{src}.drift": curve, f"{src}.heatmap": {"s": list(s), "t": list(t), "overlap": list(ov), "lags": list(self.logged_lags)}}}

    def figures(self) -> dict:
        from loclin.plots import drift_curve_figure, drift_heatmap_figure

        curve = self.curve()
        if len(curve["lags"]) < 2:
            return {}
        baseline = random_capture_baseline(self.rolling.k, self.window.dim)
        s, t, ov = zip(*self.heatmap)
        return {
            f"drift/{self.source}/curve": drift_curve_figure({self.source: curve}, baseline),
            f"drift/{self.source}/heatmap": drift_heatmap_figure(s, t, ov, self.logged_lags, title=f"{self.source} basis overlap"),
        }

    def state_dict(self) -> dict:
        ring = [(step, self.window.shard.gather(basis, 0)) for step, basis in self.ring]  # whole bases
        return {"ring": ring, "last_snapshot": self.last_snapshot, "averages": self.averages.state_dict(), "heatmap": list(self.heatmap)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.ring = [(step, self.window.shard.local(basis, 0)) for step, basis in state_dict["ring"]]
        self.last_snapshot = state_dict["last_snapshot"]
        self.averages.load_state_dict(state_dict["averages"])
        self.heatmap = [tuple(x) for x in state_dict["heatmap"]]
