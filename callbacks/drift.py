"""Drift of the rolling basis against lag (docs/science.md 4).

Every ``stride`` steps the rolling basis B_t is snapshotted. A snapshot at step s is kept
only while some lag L of the ladder still needs it (s a multiple of L and t − s < L), so
lag L is sampled at the pairs (s, s + L) with s a multiple of L: short lags get many
pairs, long lags fewer but disjoint ones, and at most len(lags) + 1 bases are held
(memory (len(lags) + 1)·D·k·4 bytes, whatever the largest lag). The rule is geometry.lags, shared
with the quadratic experiment and config validation.

Each new snapshot B_t is compared with the kept B_s at ladder lags t − s (about
Σ_L stride/L comparisons per snapshot; each reads a D×k basis): overlap ‖B_sᵀB_t‖_F²/k,
Grassmann distance, and stale-basis capture cap(B_s, v_t) of the vector just taken.
Averages over pairs at each lag give the drift curve; the half-life is the lag at which the
mean overlap halves. Every comparison also lands in the drift heatmap (step s against lag).

That full-window curve mixes two things below lag W (the windows overlap themselves) and never
reaches 1 even for a stationary stream (W samples are noisy). The honest drift figure is read
against the **noise ceiling** (geometry.drift): at every snapshot, the overlap of the top-k bases
of the window's two halves (from its Gram, no D-sized work: even- and odd-indexed vectors for gradients,
first and second halves for updates, whose momentum ties neighbours together); at every lag
L >= W, the overlap of half-window bases of two disjoint windows, B_e(s) against B_o(s + L);
their ratio, the half-life of that ratio (disjoint lags only) and the plateau (the mean over the
largest lags: the part of the basis that persists).
"""

from __future__ import annotations

import lightning as L
import torch
from loclin.callbacks.base import Averages, MeasurementCallback, metric
from loclin.callbacks.gradient_stream import GradientStream
from loclin.geometry.angles import compare_subspaces
from loclin.geometry.capture import capture, random_capture_baseline
from loclin.geometry.drift import half_life, half_window_slots, noise_ceiling, plateau_lags
from loclin.geometry.lags import is_pair, still_needed
from loclin.geometry.rolling import RollingBasis
from loclin.geometry.subspace import basis_from_rows

HEADLINE_LAG = 100
# how each stream's window splits for its ceiling (geometry.drift): gradients of independent batches
# interleave; updates carry momentum from one step into the next, so they split into first and second halves
CEILING_SPLIT = {"grad": "interleaved", "update": "halves"}


class DriftCallback(MeasurementCallback):
    def __init__(
        self,
        stream: GradientStream,
        basis: RollingBasis,
        stride: int = 25,
        lags: tuple[int, ...] = (25, 50, 100, 200, 400),
        split: str | None = None,
    ):
        if any(lag % stride for lag in lags):
            raise ValueError(f"every drift lag must be a multiple of the drift stride {stride}, got {list(lags)}")
        self.stream = stream
        self.basis = basis
        self.source = basis.source
        self.stride = stride
        self.split = split or CEILING_SPLIT.get(self.source, "interleaved")
        self.logged_lags = tuple(sorted(lags))
        self.max_lag = self.logged_lags[-1]
        self.ring: list[tuple[int, torch.Tensor, torch.Tensor | None, float]] = []  # (s, B_s, B_e(s), ceiling_s)
        self.last_snapshot = -1
        self.averages = Averages()
        self.heatmap: list[tuple[int, int, float]] = []
        stream.add_consumer(self.measure)

    @property
    def state_key(self) -> str:
        return f"Drift[{self.source}]"

    @property
    def disjoint_lags(self) -> tuple[int, ...]:
        """Lags at which two windows share no vector (L >= W): the ones read against the ceiling."""
        return tuple(lag for lag in self.logged_lags if lag >= self.stream.capacity)

    def memory_bytes(self) -> int:
        """Full-window snapshots, plus half-window ones for the disjoint lags."""
        snapshots = len(self.logged_lags) + 1 + (len(self.disjoint_lags) + 1 if self.disjoint_lags else 0)
        return snapshots * self.stream.local_dim * self.basis.k * 4

    def _half_basis(self, window, half: str) -> torch.Tensor:
        """Top-k' basis (k' = min(k, W/2)) of the window's first ("even") or second ("odd") half
        under this stream's split."""
        first, second = half_window_slots(window.steps, self.split)
        slots = first if half == "even" else second
        k_half = min(self.basis.k, len(second))
        return basis_from_rows(window.rows[slots], window.gram()[slots][:, slots], k_half, window.reduce)[0]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.stream.advance(trainer)  # which runs measure() once the basis has taken the step in

    def measure(self) -> tuple[dict[str, float], int] | None:
        """At a snapshot step, compare B_t with the kept snapshots (a consumer of the stream: it runs
        after the bases took the step in, on the measurement thread in background mode); returns the
        scalars and their step, or None between snapshots."""
        step = self.basis.current_step
        fresh = step == self.stream.latest_step[self.source]
        if not fresh or step % self.stride or step == self.last_snapshot:
            return None
        self.last_snapshot = step
        basis = self.basis.current_basis
        vector = self.stream.latest(self.source)
        reduce = self.stream.shard.reduce
        self.averages.add("stale_capture_lag0", capture(basis, vector, reduce))
        window = self.stream.windows[self.source]
        ceiling = noise_ceiling(window.gram(), window.steps, self.basis.k, self.split)
        self.averages.add("noise_ceiling", ceiling)
        logs = {f"drift/{self.source}/noise_ceiling": ceiling}
        logs.update(self._ceiling_band())
        odd: torch.Tensor | None = None
        for past_step, past_basis, past_even, past_ceiling in self.ring:
            lag = step - past_step
            if lag not in self.logged_lags or not is_pair(past_step, step, lag):
                continue
            if past_even is not None and lag in self.disjoint_lags:
                odd = self._half_basis(window, "odd") if odd is None else odd
                half = compare_subspaces(past_even, odd, reduce)["overlap"]
                self.averages.add(f"half_overlap_lag{lag}", half)
                self.averages.add(f"pair_ceiling_lag{lag}", 0.5 * (past_ceiling + ceiling))
                logs[f"drift/{self.source}/half_overlap_lag{lag}"] = half
                logs[f"drift/{self.source}/overlap_ratio_lag{lag}"] = half / (0.5 * (past_ceiling + ceiling))
            comparison = compare_subspaces(past_basis, basis, reduce)
            stale = capture(past_basis, vector, reduce)
            self.heatmap.append((past_step, step, comparison["overlap"]))
            self.averages.add(f"overlap_lag{lag}", comparison["overlap"])
            self.averages.add(f"grassmann_lag{lag}", comparison["grassmann"])
            self.averages.add(f"stale_capture_lag{lag}", stale)
            logs[f"drift/{self.source}/overlap_lag{lag}"] = comparison["overlap"]
            logs[f"drift/{self.source}/stale_capture_lag{lag}"] = stale
            logs[f"drift/{self.source}/grassmann_lag{lag}"] = comparison["grassmann"]
        self.ring = [entry for entry in self.ring if still_needed(entry[0], step, self.logged_lags)]
        if still_needed(step, step, self.logged_lags):
            even = self._half_basis(window, "even") if any(step % lag == 0 for lag in self.disjoint_lags) else None
            self.ring.append((step, basis, even, ceiling))
        return logs, step

    def _ceiling_band(self) -> dict[str, float]:
        """Running mean ± std of the noise ceiling, for TensorBoard's margin chart."""
        mean, std = self.averages.mean("noise_ceiling"), self.averages.std("noise_ceiling")
        prefix = f"drift/{self.source}/noise_ceiling"
        return {f"{prefix}_mean": mean, f"{prefix}_lower": mean - std, f"{prefix}_upper": mean + std}

    def curve(self) -> dict[str, list[float]]:
        self.stream.wait()
        lags = [lag for lag in self.logged_lags if self.averages.count(f"overlap_lag{lag}")]
        return {
            "lags": [0] + lags,
            "overlap": [1.0] + [self.averages.mean(f"overlap_lag{lag}") for lag in lags],
            "overlap_std": [0.0] + [self.averages.std(f"overlap_lag{lag}") for lag in lags],
            "grassmann": [0.0] + [self.averages.mean(f"grassmann_lag{lag}") for lag in lags],
            "stale_capture": [self.averages.mean("stale_capture_lag0")]
            + [self.averages.mean(f"stale_capture_lag{lag}") for lag in lags],
            "pairs": [self.averages.count("stale_capture_lag0")]
            + [self.averages.count(f"overlap_lag{lag}") for lag in lags],
            **self.ceiling_curve(),
        }

    def ceiling_curve(self) -> dict:
        """Disjoint-window drift against the noise ceiling (empty lists when nothing was measured)."""
        lags = [lag for lag in self.disjoint_lags if self.averages.count(f"half_overlap_lag{lag}")]
        half = [self.averages.mean(f"half_overlap_lag{lag}") for lag in lags]
        pair_ceiling = [self.averages.mean(f"pair_ceiling_lag{lag}") for lag in lags]
        return {
            "noise_ceiling": self.averages.mean("noise_ceiling"),
            "noise_ceiling_std": self.averages.std("noise_ceiling"),
            "noise_ceiling_count": self.averages.count("noise_ceiling"),
            "half_lags": lags,
            "half_overlap": half,
            "half_overlap_std": [self.averages.std(f"half_overlap_lag{lag}") for lag in lags],
            "ratio": [h / c if c > 0 else float("nan") for h, c in zip(half, pair_ceiling)],
            "half_pairs": [self.averages.count(f"half_overlap_lag{lag}") for lag in lags],
        }

    def summary(self) -> dict:
        curve = self.curve()
        if len(curve["lags"]) < 2:
            return {}
        src = self.source
        baseline = random_capture_baseline(self.basis.k, self.stream.dim)
        value, bound = half_life(curve["lags"][1:], curve["overlap"][1:])
        entry = metric(
            value,
            "half_life (docs/science.md 4): lag where mean overlap falls to 0.5, measured lags only, steps (bound: "
            "at_most = already below ½ at the smallest lag, at_least = above ½ up to the largest)",
        )
        metrics = {
            f"{src}.half_life": {**entry, "bound": bound} if bound else entry,
            f"{src}.max_lag": metric(float(curve["lags"][-1]), "largest lag on the drift curve, steps"),
        }
        for lag, overlap_value, stale in zip(curve["lags"][1:], curve["overlap"][1:], curve["stale_capture"][1:]):
            note = "; < 0.5 at lag 100 reads as substantial drift" if lag == HEADLINE_LAG else ""
            metrics[f"{src}.overlap_lag{lag}"] = metric(
                overlap_value, f"overlap (docs/science.md 4) ‖B_sᵀB_t‖²/k at lag {lag}{note}", baseline
            )
            metrics[f"{src}.stale_capture_lag{lag}"] = metric(
                stale, f"stale-basis capture (docs/science.md 4) cap(B_s, v_(s+{lag})), energy", baseline
            )
        metrics.update(self.ceiling_metrics(curve, baseline))
        s, t, ov = zip(*self.heatmap) if self.heatmap else ((), (), ())
        return {
            "metrics": metrics,
            "curves": {
                f"{src}.drift": curve,
                f"{src}.heatmap": {"s": list(s), "t": list(t), "overlap": list(ov), "lags": list(self.logged_lags)},
            },
        }

    def ceiling_metrics(self, curve: dict, baseline: float) -> dict:
        """The honest drift figures: disjoint-window overlap, its ratio to the noise ceiling, the
        ratio's half-life and the plateau."""
        src, window = self.source, self.stream.capacity
        if not curve["noise_ceiling_count"]:
            return {}
        metrics = {
            f"{src}.noise_ceiling": {
                **metric(
                    curve["noise_ceiling"],
                    "noise ceiling (docs/science.md 4): overlap of the top-k bases of the even and odd halves of one "
                    f"window (W/2 = {window // 2} vectors each), mean over {curve['noise_ceiling_count']} snapshots",
                    baseline,
                ),
                "spread": {"std": curve["noise_ceiling_std"]},
            }
        }
        for lag, half, ratio in zip(curve["half_lags"], curve["half_overlap"], curve["ratio"]):
            metrics[f"{src}.half_overlap_lag{lag}"] = metric(
                half,
                f"overlap of half-window bases of disjoint windows (W = {window}) at lag {lag}, B_e(s) against "
                f"B_o(s+{lag})",
                baseline,
            )
            metrics[f"{src}.overlap_ratio_lag{lag}"] = metric(
                ratio,
                f"half-window overlap at lag {lag} ÷ noise ceiling: 1 = no drift beyond sampling noise (the honest "
                "drift figure)",
            )
        if curve["half_lags"]:
            value, bound = half_life(curve["half_lags"], curve["ratio"])
            entry = metric(
                value,
                "half-life (docs/science.md 4) of overlap ÷ ceiling, from disjoint-window lags only, steps "
                "(bound: at_most = already below ½ at the smallest disjoint lag, at_least = above ½ up to the largest)",
            )
            metrics[f"{src}.half_life_ratio"] = {**entry, "bound": bound} if bound else entry
            top = plateau_lags(curve["half_lags"])
            chosen = [curve["half_lags"].index(lag) for lag in top]
            plateau = sum(curve["half_overlap"][i] for i in chosen) / len(chosen)
            metrics[f"{src}.plateau"] = metric(
                plateau,
                f"plateau: mean half-window overlap over the largest lags {top}, the part of the basis that persists",
                baseline,
            )
            metrics[f"{src}.plateau_ratio"] = metric(
                sum(curve["ratio"][i] for i in chosen) / len(chosen), f"plateau ÷ noise ceiling over lags {top}"
            )
        return metrics

    def figures(self) -> dict:
        from loclin.callbacks.figures import DRIFT_PANELS, drift_curve_figure, drift_heatmap_figure

        curve = self.curve()
        if len(curve["lags"]) < 2:
            return {}
        baseline = random_capture_baseline(self.basis.k, self.stream.dim)
        s, t, ov = zip(*self.heatmap)
        with_ceiling = bool(curve["half_lags"])
        return {  # one panel per image, so each is readable at the width of a TensorBoard card
            **{
                f"drift/{self.source}/curve_{panel}": drift_curve_figure({self.source: curve}, baseline, [panel])
                for panel in DRIFT_PANELS
                if panel != "ceiling" or with_ceiling
            },
            f"drift/{self.source}/heatmap": drift_heatmap_figure(
                s, t, ov, self.logged_lags, title=f"{self.source} basis overlap"
            ),
        }

    def state_dict(self) -> dict:
        self.stream.wait()
        whole = self.stream.shard.gather
        ring = [
            (step, whole(basis, 0), None if even is None else whole(even, 0), ceiling)
            for step, basis, even, ceiling in self.ring
        ]
        return {
            "ring": ring,
            "last_snapshot": self.last_snapshot,
            "averages": self.averages.state_dict(),
            "heatmap": list(self.heatmap),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        local = self.stream.shard.local
        self.ring = [
            (step, local(basis, 0), None if even is None else local(even, 0), ceiling)
            for step, basis, even, ceiling in state_dict["ring"]
        ]
        self.last_snapshot = state_dict["last_snapshot"]
        self.averages.load_state_dict(state_dict["averages"])
        self.heatmap = [tuple(x) for x in state_dict["heatmap"]]
