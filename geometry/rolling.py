"""The rolling top-k basis of one vector window, its spectrum and its held-out capture (docs/science.md 1, 3).

Every ``stride`` steps, once the window is full, B_t = top-k left singular vectors of
[v_{t−W+1} … v_t]. Each B_t then captures later vectors, which were not in its window:
cap(B_t, v_{t+h}) for h in ``heldout_lags``, against k/D. Those captures are computed at the next
refresh, in one product with the window rows that arrived since (all still in the window because
stride <= W), so a step between refreshes costs nothing.

With ``stride`` 1 the window is a StreamingWindow (geometry.window): every commit brings the new
vector's products with the window and the rows it evicted, so the spectrum comes from a W×W
eigen-decomposition at every step and every held-out capture from those products,
cap(B_s, v) = ‖C_sᵀ (X_s v)‖² / ‖v‖² with B_s = X_sᵀ C_s (C_s = V_k Σ_k⁻¹, W×k): no D-sized
work. B itself is formed (one D×W×k product) only when something reads ``current_basis``.

``RollingBasis`` is the running state of that measurement: the current basis, the bases still
waiting for their held-out vectors, and the running means. It is pure torch; the gradient stream
(callbacks.gradient_stream) feeds it one window step at a time, and the callbacks read it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from loclin.geometry.capture import capture_rows
from loclin.geometry.running import Averages
from loclin.geometry.spectrum import spectrum_summary
from loclin.geometry.subspace import basis_coefficients, basis_from_coefficients
from loclin.geometry.window import StreamingWindow, VectorWindow


class RollingBasis:
    def __init__(self, source: str, k: int = 8, stride: int = 10, heldout_lags: tuple[int, ...] = (1, 2, 4, 8)):
        self.source = source
        self.k = k
        self.stride = stride
        self.heldout_lags = tuple(sorted(heldout_lags))
        self.horizon = self.heldout_lags[-1]
        self.current_step = -1
        self._current_basis: torch.Tensor | None = None
        self.pending: list[tuple[int, torch.Tensor]] = []  # bases still capturing future vectors
        # streaming: (step, C, the steps of the window's rows in C's order), B = X_stepᵀ C formed on demand
        self.coefficients: list[tuple[int, torch.Tensor, list[int]]] = []
        self.window: StreamingWindow | None = None  # set by the stream that feeds this basis
        self.averages = Averages()
        self.energy_fraction_sum: torch.Tensor | None = None
        self.refreshes = 0
        self.last_seen = -1

    @property
    def prefix(self) -> str:
        return f"geometry/{self.source}"

    @property
    def streaming(self) -> bool:
        """Whether the window brings a Gram row per commit (stride 1): held-out captures from W-sized products."""
        return self.stride == 1

    @property
    def current_basis(self) -> torch.Tensor | None:
        """B_t (D×k, or this rank's rows) of the newest refresh; streaming, formed at the first read."""
        if self._current_basis is None and self.coefficients and self.coefficients[-1][0] == self.current_step:
            _, coefficients, steps = self.coefficients[-1]
            window = self.window
            self._current_basis = basis_from_coefficients(window.rows_at(steps), coefficients, window.reduce)
        return self._current_basis

    def memory_bytes(self, local_dim: int) -> int:
        """Upper bound: the current basis plus those still waiting for held-out vectors (streaming:
        the current basis; the waiting ones are W×k coefficients)."""
        if self.streaming:
            return local_dim * self.k * 4
        waiting = -(-self.horizon // self.stride) + 1
        return (waiting + 1) * local_dim * self.k * 4

    def observe(self, window: VectorWindow, step: int) -> dict[str, float]:
        """Take in the vector of ``step`` (the newest in ``window``), once; at a refresh step
        return the held-out captures and the new basis's spectrum, by TensorBoard tag."""
        if step == self.last_seen:
            return {}  # nothing new entered the window (a non-finite vector was skipped)
        self.last_seen = step
        if self.streaming:
            return self._observe_streaming(step, window)
        if window.size < window.capacity or step % self.stride:
            return {}
        logs = self._heldout_captures(step, window)
        logs.update(self._refresh(step, window))
        return logs

    def _observe_streaming(self, step: int, window: StreamingWindow) -> dict[str, float]:
        """cap(B_s, v_step) = ‖C_sᵀ (X_s v)‖² / ‖v‖² for each waiting basis s, from the window's
        products of v; then, with the window full, the refresh of step: C_step and the spectrum."""
        logs = {}
        products = window.products
        for basis_step, coefficients, steps in self.coefficients:
            h = step - basis_step
            if h in self.heldout_lags:
                projections = coefficients.T @ torch.tensor([products[s] for s in steps], dtype=torch.float64)
                value = float(projections.pow(2).sum() / products[step])
                self.averages.add(f"heldout_h{h}", value)
                logs[f"{self.prefix}/heldout_capture_h{h}"] = value
        self.coefficients = [entry for entry in self.coefficients if entry[0] + self.horizon > step]
        if window.size < window.capacity:
            return logs
        coefficients, singular_values = basis_coefficients(window.gram(), self.k)
        self.coefficients.append((step, coefficients, window.steps.tolist()))
        self.current_step, self._current_basis = step, None
        logs.update(self._record_spectrum(singular_values, window))
        return logs

    def _heldout_captures(self, step: int, window: VectorWindow) -> dict[str, float]:
        """Captures cap(B_s, v_(s+h)) for every v that entered the window since the last refresh."""
        logs = {}
        slot_steps = window.steps.tolist()
        for basis_step, basis in self.pending:
            lag_of = {basis_step + h: h for h in self.heldout_lags if self.current_step < basis_step + h <= step}
            slots = [slot for slot, s in enumerate(slot_steps) if s in lag_of]
            if not slots:
                continue
            for slot, value in zip(slots, capture_rows(basis, window.rows[slots], window.reduce).tolist()):
                h = lag_of[slot_steps[slot]]
                self.averages.add(f"heldout_h{h}", value)
                logs[f"{self.prefix}/heldout_capture_h{h}"] = value
        self.pending = [(s, b) for s, b in self.pending if s + self.horizon > step]
        return logs

    def _refresh(self, step: int, window: VectorWindow) -> dict[str, float]:
        basis, singular_values = window.basis(self.k)
        self.current_step, self._current_basis = step, basis
        self.pending.append((step, basis))
        return self._record_spectrum(singular_values, window)

    def _record_spectrum(self, singular_values: torch.Tensor, window: VectorWindow) -> dict[str, float]:
        """The refreshed window's spectrum summary, and each group's top-k energy, into the means."""
        self.refreshes += 1
        fractions = singular_values**2 / (singular_values**2).sum()
        self.energy_fraction_sum = (
            fractions if self.energy_fraction_sum is None else self.energy_fraction_sum + fractions
        )
        logs = {}
        for name, value in spectrum_summary(singular_values, self.k).items():
            self.averages.add(name, value)
            logs[f"{self.prefix}/{name}"] = value
        if len(window.group_slices) > 1:
            for group in window.group_slices:
                energy = spectrum_summary(window.singular_values(group), self.k)["energy_topk"]
                self.averages.add(f"energy_topk/{group}", energy)
                logs[f"{self.prefix}/energy_topk/{group}"] = energy
        return logs

    def state_dict(self, whole: Callable[[torch.Tensor | None, int], torch.Tensor | None]) -> dict:
        """Bases are stored whole: ``whole`` gathers a rank's rows when the windows are sharded."""
        return {
            "current_step": self.current_step,
            "current_basis": None if self.streaming else whole(self.current_basis, 0),
            "pending": [(step, whole(basis, 0)) for step, basis in self.pending],
            "coefficients": list(self.coefficients),
            "averages": self.averages.state_dict(),
            "energy_fraction_sum": self.energy_fraction_sum,
            "refreshes": self.refreshes,
            "last_seen": self.last_seen,
        }

    def load_state_dict(self, state: dict, local: Callable[[torch.Tensor | None, int], torch.Tensor | None]) -> None:
        self.current_step = state["current_step"]
        self._current_basis = local(state["current_basis"], 0)
        self.pending = [(step, local(basis, 0)) for step, basis in state["pending"]]
        self.coefficients = list(state.get("coefficients", []))
        self.averages.load_state_dict(state["averages"])
        self.energy_fraction_sum = state["energy_fraction_sum"]
        self.refreshes = state["refreshes"]
        self.last_seen = state["last_seen"]
