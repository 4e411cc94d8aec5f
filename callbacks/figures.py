"""Figures shared by TensorBoard images (callbacks) and analyze.py; each takes plain data.

Functions taking ``series`` accept {label: data} so analyze.py can overlay several runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def spectrum_figure(series: dict[str, Sequence[float]], k: int, title: str = "window spectrum") -> Figure:
    """Energy fraction s_i²/Σs² per singular index (log scale), top-k shaded."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, fractions in series.items():
        x = np.arange(1, len(fractions) + 1)
        ax.plot(x, fractions, marker="o", ms=3, label=label)
    ax.axvspan(0.5, k + 0.5, color="tab:green", alpha=0.1, label=f"top-{k}")
    ax.set_yscale("log")
    ax.set_xlabel("singular index i")
    ax.set_ylabel("energy fraction $s_i^2/\\Sigma s^2$")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def heldout_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]], baseline: float) -> Figure:
    """Held-out capture cap(B_t, g_{t+h}) against h, with the random k/D baseline."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, (h, capture) in series.items():
        ax.plot(h, capture, marker="o", ms=3, label=label)
    ax.axhline(baseline, color="gray", ls="--", label=f"random k/D = {baseline:.2g}")
    ax.set_yscale("log")
    ax.set_xlabel("steps ahead h")
    ax.set_ylabel("held-out energy capture")
    ax.set_title("held-out capture of future gradients")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


DRIFT_PANELS = ("drift", "stale", "ceiling")


def drift_curve_figure(
    series: dict[str, dict[str, Sequence[float]]], baseline: float, panels: Sequence[str] = DRIFT_PANELS
) -> Figure:
    """Overlap ‖B_sᵀB_t‖²/k and stale-basis capture cap(B_s, g_t) against lag t − s, and, where
    measured, the disjoint-window drift against its noise ceiling (a band: mean ± std over
    snapshots) and their ratio.

    Overlap and capture are on log axes reaching below the random baseline k/D, so "N× above
    random" can be read off. Lag 0 (the basis against the window it came from) is a lone marker:
    no line joins it to the first true lag. ``panels``: which of "drift", "stale" and "ceiling"
    to draw, side by side (TensorBoard shows one per image, readable at its card's width)."""
    with_ceiling = any(curve.get("half_lags") for curve in series.values())
    names = [name for name in panels if name != "ceiling" or with_ceiling]
    fig, grid = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    ax = dict(zip(names, grid[0]))
    lowest = [baseline] if np.isfinite(baseline) and baseline > 0 else []
    for index, (label, curve) in enumerate(series.items()):
        color = f"C{index}"
        lags = np.asarray(curve["lags"], dtype=float)
        ov = np.asarray(curve["overlap"], dtype=float)
        sd = np.asarray(curve.get("overlap_std", np.zeros_like(ov)), dtype=float)
        stale = np.asarray(curve["stale_capture"], dtype=float)
        later = lags > 0
        lowest += [v for v in (*ov[later], *stale) if v > 0]
        if "drift" in ax:
            ax["drift"].plot(lags[later], ov[later], marker="o", ms=3, color=color, label=f"{label}: full windows")
            band = (ov - sd)[later], (ov + sd)[later]
            ax["drift"].fill_between(lags[later], *band, color=color, alpha=0.15, label=f"{label}: ± std over pairs")
        if "stale" in ax:
            ax["stale"].plot(lags[later], stale[later], marker="o", ms=3, color=color, label=label)
            if (~later).any():
                ax["stale"].plot(
                    lags[~later], stale[~later], ls="none", marker="D", ms=4, color=color, label=f"{label}: lag 0"
                )
        if curve.get("half_lags") and "drift" in ax:
            ax["drift"].plot(
                curve["half_lags"],
                curve["half_overlap"],
                marker="s",
                ms=4,
                ls="--",
                color=color,
                label=f"{label}: half windows, disjoint (L ≥ W)",
            )
            ceiling, spread = curve["noise_ceiling"], curve.get("noise_ceiling_std", 0.0)
            ax["drift"].axhspan(max(ceiling - spread, 1e-12), ceiling + spread, color=color, alpha=0.12)
            ax["drift"].axhline(
                ceiling, color=color, lw=0.8, ls="-.", label=f"{label}: noise ceiling {ceiling:.2f} ± {spread:.2f}"
            )
        if curve.get("half_lags") and "ceiling" in ax:
            ax["ceiling"].plot(curve["half_lags"], curve["ratio"], marker="s", ms=4, color=color, label=label)
    bottom = min(lowest) / 3 if lowest else None
    for name, ylabel, title in (
        ("drift", "overlap $\\|B_s^T B_t\\|_F^2/k$ (log)", "basis drift"),
        ("stale", "stale capture cap$(B_s, g_t)$ (log)", "how much an old basis still explains"),
    ):
        if name in ax:
            ax[name].axhline(baseline, color="gray", ls="--", label=f"random k/D = {baseline:.2g}")
            ax[name].set_xlabel("lag t − s (steps)")
            ax[name].set_ylabel(ylabel)
            ax[name].set_yscale("log")
            ax[name].set_ylim(bottom=bottom, top=1.5)
            ax[name].set_title(title)
    if "drift" in ax:
        ax["drift"].axhline(0.5, color="tab:red", ls=":", lw=0.8, label="half overlap (0.5)")
    if "ceiling" in ax:
        ax["ceiling"].axhline(1.0, color="gray", ls="-.", lw=0.8, label="no drift beyond sampling noise")
        ax["ceiling"].axhline(0.5, color="tab:red", ls=":", lw=0.8, label="half")
        ax["ceiling"].set_xlabel("lag t − s (steps, disjoint windows)")
        ax["ceiling"].set_ylabel("overlap ÷ noise ceiling")
        ax["ceiling"].set_ylim(bottom=0)
        ax["ceiling"].set_title("drift against the noise ceiling")
    for axis in ax.values():
        axis.legend(fontsize=7 if len(ax) > 1 else 8)
    fig.tight_layout()
    return fig


def drift_heatmap_figure(
    steps_a: Sequence[int],
    steps_b: Sequence[int],
    overlaps: Sequence[float],
    lags: Sequence[int],
    title: str = "basis overlap",
) -> Figure:
    """Overlap between the bases at steps s and t = s + L, drawn as step s against lag L.

    This is the band of the s×t overlap matrix that was measured (lags of the drift ladder),
    unrolled so that each lag is one row: a row that darkens along s means drift at that lag
    changed during training.
    """
    s = np.asarray(steps_a)
    lag = np.asarray(steps_b) - s
    keep = np.isin(lag, lags)
    rows = np.searchsorted(np.asarray(sorted(lags)), lag[keep])
    columns = max(1, len(set(s.tolist())))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    image = ax.scatter(
        s[keep],
        rows,
        c=np.asarray(overlaps)[keep],
        vmin=0,
        vmax=1,
        cmap="viridis",
        marker="s",
        s=max(4.0, 600.0 / columns),
    )
    fig.colorbar(image, ax=ax, label="overlap $\\|B_s^T B_{s+L}\\|_F^2/k$")
    ax.set_yticks(range(len(lags)), [str(v) for v in sorted(lags)])
    ax.set_xlabel("step s")
    ax.set_ylabel("lag L (steps)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def matrix_figure(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str, vmax: float = 1.0) -> Figure:
    """A labelled square matrix (e.g. overlaps between tasks' gradient bases)."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    image = ax.imshow(m, vmin=0, vmax=vmax, cmap="magma")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w" if m[i, j] < 0.6 * vmax else "k"
            )
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


PAPER_LORA_PREFIX_M, PAPER_LORA_PREFIX_CAPTURE = 8, 0.77  # arXiv 2606.10929, claim C4


def prefix_capture_figure(
    series: dict[str, dict[str, Sequence[float]]],
    statics: dict[str, float | tuple[float, int]],
    baseline: float,
    controls: dict[str, dict[int, float]] | None = None,
) -> Figure:
    """Prefix capture cap(P_m, Δ) against m (updates, gradients and, for LoRA, effective weight
    space), static bases as lines (each with its rank k: ``(capture, k)``), and the controls that
    decide whether the prefix is special: m updates at random positions (R_m) and the last m (L_m)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (name, by_m) in enumerate(sorted((controls or {}).items())):
        ms = sorted(by_m)
        ax.plot(
            ms, [by_m[m] for m in ms], marker="x", ls=(0, (4, 2)), lw=1, color=("0.35", "tab:red")[i % 2], label=name
        )
    for label, curve in series.items():
        (line,) = ax.plot(curve["m"], curve["updates"], marker="o", label=f"{label}: P_m from updates")
        if curve.get("gradients"):
            ax.plot(
                curve["m"],
                curve["gradients"],
                marker="s",
                ls="--",
                color=line.get_color(),
                label=f"{label}: P_m from gradients",
            )
        if curve.get("effective_updates"):
            ax.plot(
                curve["m"],
                curve["effective_updates"],
                marker="^",
                ls="-.",
                color=line.get_color(),
                label=f"{label}: effective weights (α/r)BA",
            )
    for i, (name, entry) in enumerate(sorted(statics.items())):
        value, k = entry if isinstance(entry, tuple) else (entry, None)
        rank = f" (k = {k})" if k is not None else ""
        ax.axhline(value, color=plt.cm.tab10(i % 10), ls=":", lw=1, label=f"{name}{rank}: {value:.3f}")
    ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"random k/D = {baseline:.2g}")
    if any(curve.get("effective_updates") for curve in series.values()):  # a LoRA run: the paper's C4 point
        ax.plot(
            [PAPER_LORA_PREFIX_M],
            [PAPER_LORA_PREFIX_CAPTURE],
            "k*",
            ms=10,
            label=f"paper, LoRA, m = 8: {PAPER_LORA_PREFIX_CAPTURE}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel("cap(B, Δ), energy")
    ax.set_ylim(0, 1.02)
    ax.set_title("recovery displacement captured")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.subplots_adjust(left=0.08, right=0.6, bottom=0.13, top=0.9)  # the legend beside the axes, inside the canvas
    return fig
