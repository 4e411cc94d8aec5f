"""Running means and standard deviations of named scalars, the bookkeeping behind every averaged
measurement (held-out capture, drift overlaps). Plain floats, so a checkpoint holds them exactly."""

from __future__ import annotations


class Averages:
    """Running mean and standard deviation of named scalars (plain floats: checkpoint-safe)."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        acc = self.sums.setdefault(name, [0.0, 0.0, 0])
        acc[0] += value
        acc[1] += value * value
        acc[2] += 1

    def mean(self, name: str) -> float:
        total, _, n = self.sums.get(name, (0.0, 0.0, 0))
        return total / n if n else float("nan")

    def std(self, name: str) -> float:
        total, total_sq, n = self.sums.get(name, (0.0, 0.0, 0))
        if n < 2:
            return float("nan") if n == 0 else 0.0
        return max(total_sq / n - (total / n) ** 2, 0.0) ** 0.5

    def count(self, name: str) -> int:
        return int(self.sums.get(name, (0, 0, 0))[2])

    def state_dict(self) -> dict:
        return {name: list(acc) for name, acc in self.sums.items()}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {name: list(acc) for name, acc in state.items()}
