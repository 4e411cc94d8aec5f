"""Spectral summaries of a window's singular values s (docs/science.md measurement 1).

With p_i = s_i² / Σ_j s_j²:
    top-k energy        E_k  = Σ_{i<=k} p_i
    effective rank      r_eff = exp(H(p)),  H(p) = −Σ p_i log p_i
    participation ratio PR   = (Σ s_i²)² / Σ s_i⁴ = 1 / Σ p_i²
"""

from __future__ import annotations

import torch


def _energy_fractions(s: torch.Tensor) -> torch.Tensor:
    energy = s.to(torch.float64) ** 2
    total = energy.sum()
    if total <= 0:
        raise ValueError("spectrum of an all-zero window is undefined")
    return energy / total


def topk_energy(s: torch.Tensor, k: int) -> float:
    """Fraction of the window's energy in its top-k singular directions."""
    p = torch.sort(_energy_fractions(s), descending=True).values
    return float(p[:k].sum())


def effective_rank(s: torch.Tensor) -> float:
    """exp of the Shannon entropy of the normalised energy spectrum (Roy & Vetterli)."""
    p = _energy_fractions(s)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def participation_ratio(s: torch.Tensor) -> float:
    """(Σ s²)² / Σ s⁴: how many directions carry the energy, weighting large ones more."""
    p = _energy_fractions(s)
    return float(1.0 / (p**2).sum())


def spectrum_summary(s: torch.Tensor, k: int) -> dict[str, float]:
    """The three summaries of measurement 1 under their docs/science.md names."""
    return {
        "energy_topk": topk_energy(s, k),
        "effective_rank": effective_rank(s),
        "participation_ratio": participation_ratio(s),
    }
