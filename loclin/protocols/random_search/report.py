"""analyze.py's random-search section: predicted against measured, with the error of each, and
the plots of docs/science.md 8 (QQ, mean, P(improve), best of N, subspaces, dimension, along the run)."""

from __future__ import annotations

from pathlib import Path

from loclin.callbacks.keys import RANDOM_SEARCH_POINTS, RANDOM_SEARCH_WIDTHS
from loclin.geometry.perturbed_loss import HOLDS_TOLERANCE, holds_up_to, largest_n, relative_error
from loclin.reports.tables import fmt, render_markdown


def sigma_table(point: dict, rows_key: str = "fixed") -> list[list[str]]:
    n, top = point["sigma_star"]["n"], largest_n(point)
    table = [
        [
            "σ/σ_lin",
            "E[ΔL] pred",
            "E[ΔL] meas",
            "err (SE)",
            "std pred",
            "std meas",
            "rel err",
            "P(ΔL<0) pred",
            "P(ΔL<0) meas",
            f"best of {n} pred",
            f"best of {n} meas",
            "rel err",
            "−m_N σ‖g‖ (linear)",
            f"best of {top} pred / meas",
        ]
    ]
    for multiple, row in zip(point["sigma_multiples"], point[rows_key]):
        table.append(
            [
                fmt(multiple),
                fmt(row["pred_mean"]),
                fmt(row["mean"]),
                fmt((row["mean"] - row["pred_mean"]) / row["mean_se"] if row["mean_se"] else float("nan")),
                fmt(row["pred_std"]),
                fmt(row["std"]),
                fmt(relative_error(row["std"], row["pred_std"])),
                fmt(row["pred_p_improve"]),
                fmt(row["p_improve"]),
                fmt(row[f"pred_best{n}"]),
                fmt(row[f"best{n}"]),
                fmt(relative_error(row[f"best{n}"], row[f"pred_best{n}"])),
                fmt(row[f"linear_best{n}"]),
                f"{fmt(row[f'pred_best{top}'])} / {fmt(row[f'best{top}'])}",
            ]
        )
    return table


def point_table(point: dict) -> list[list[str]]:
    star, es = point["sigma_star"], point["es"]
    rows = [["quantity", "predicted", "measured", "error"]]
    rows.append(
        [
            f"σ* (best of {star['n']}), m_N‖g‖/tr H",
            fmt(star["pred"]),
            fmt(star["measured"]),
            f"×{fmt(star['measured'] / star['pred'])}",
        ]
    )
    rows.append(
        [
            f"σ* (best of {star['n']}), minimiser of Theorem B incl. ‖H‖_F",
            fmt(star["pred_numeric"]),
            fmt(star["measured"]),
            f"×{fmt(star['measured'] / star['pred_numeric'])}",
        ]
    )
    rows.append(
        [
            f"best-of-{star['n']} gain at σ*, G* = m_N²‖g‖²/(2 tr H)",
            fmt(star["pred_gain"]),
            fmt(star["measured_gain"]),
            fmt(relative_error(star["measured_gain"], star["pred_gain"])),
        ]
    )
    rows.append(
        [
            f"ES cosine, N = {es['n']}, D = {point['dim']}",
            fmt(es["pred_cos"]),
            fmt(es["cos"]),
            fmt(relative_error(es["cos"], es["pred_cos"])),
        ]
    )
    return rows


def subspace_table(point: dict) -> list[list[str]]:
    n = point["sigma_star"]["n"]
    rows = [
        [
            "space",
            "k",
            "cap(U, g)",
            "tr(UᵀHU)",
            "ρ(U)/ρ(full)",
            f"best of {n}, σ ≤ σ_lin: pred",
            "meas",
            "rel err",
            "−G*_U pred",
            "best meas (grid)",
        ]
    ]
    for name, row in point["subspaces"].items():
        rows.append(
            [
                name,
                str(row["k"]),
                fmt(row["capture_g"]),
                fmt(row["trace_h"]),
                fmt(row["rho"] / row["rho_full"]),
                fmt(row["pred_best_local"]),
                fmt(row["measured_best_local"]),
                fmt(relative_error(row["measured_best_local"], row["pred_best_local"])),
                fmt(row["pred_gain"]),
                fmt(row["measured_gain"]),
            ]
        )
    return rows


def selection_table(point: dict) -> list[list[str]]:
    ns = sorted(int(k[4:]) for k in point["selected_heldout"][0])
    rows = [["σ/σ_lin", *(f"N={n}: batch / held-out" for n in ns)]]
    for multiple, fixed, chosen in zip(point["sigma_multiples"], point["fixed"], point["selected_heldout"]):
        rows.append([fmt(multiple), *(f"{fmt(fixed[f'best{n}'])} / {fmt(chosen[f'best{n}'])}" for n in ns)])
    return rows


def width_table(rows: list[dict]) -> list[list[str]]:
    table = [
        [
            "d_model",
            "D",
            "‖g‖",
            "tr H",
            "σ_lin",
            "P(ΔL<0) meas / pred",
            "best-of-N / linear",
            "std / pred",
            "ES cos meas / pred",
        ]
    ]
    for r in rows:
        table.append(
            [
                str(r["width"]),
                str(r["dim"]),
                fmt(r["grad_norm"]),
                fmt(r["trace_h"]),
                fmt(r["sigma_linear"]),
                f"{fmt(r['p_improve'])} / {fmt(r['pred_p_improve'])}",
                fmt(r["best_over_linear"]),
                fmt(r["std_over_pred"]),
                f"{fmt(r['es_cos'])} / {fmt(r['pred_es_cos'])}",
            ]
        )
    return table


def figures(summary: dict, title: str) -> dict:
    import matplotlib.pyplot as plt
    import torch

    point = summary["curves"][RANDOM_SEARCH_POINTS][-1]
    multiples, n = point["sigma_multiples"], largest_n(point)
    found = {}

    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    normal = torch.special.ndtri(torch.linspace(0.01, 0.99, 99, dtype=torch.float64)).tolist()
    for multiple, row in zip(multiples, point["fixed"]):
        ax.plot(normal, row["quantiles"], ".", ms=3, label=f"σ = {multiple:g} σ_lin")
    ax.plot([-2.5, 2.5], [-2.5, 2.5], "k:", label="N(0, 1)")
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("quantile of ΔL / (σ‖g‖)")
    ax.set_ylim(-4, 4)
    ax.set_title(f"{title}: QQ")
    ax.legend(fontsize=6)
    fig.tight_layout()
    found["rs_qq.png"] = (fig, "QQ plot of ΔL/(σ‖g‖) against N(0, 1) at each σ")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].errorbar(
        multiples,
        [r["mean"] for r in point["fixed"]],
        yerr=[2 * r["mean_se"] for r in point["fixed"]],
        fmt="o",
        label="measured mean ± 2 SE",
    )
    axes[0].plot(multiples, [r["pred_mean"] for r in point["fixed"]], "-", label="½σ² tr H (Hutchinson)")
    axes[0].set_yscale("symlog", linthresh=max(1e-8, abs(point["fixed"][0]["std"])))
    axes[0].set_ylabel("E[ΔL]")
    axes[1].plot(multiples, [r["p_improve"] for r in point["fixed"]], "o", label="measured")
    axes[1].plot(multiples, [r["pred_p_improve"] for r in point["fixed"]], "-", label="Theorem A (Gaussian)")
    axes[1].axhline(0.5, color="gray", ls=":")
    axes[1].set_ylabel("P(ΔL < 0)")
    for m in sorted({int(k[4:]) for k in point["fixed"][0] if k.startswith("best")}):
        line = axes[2].plot(multiples, [r[f"best{m}"] for r in point["fixed"]], "o", label=f"N={m} measured")[0]
        axes[2].plot(multiples, [r[f"pred_best{m}"] for r in point["fixed"]], "-", color=line.get_color())
        axes[2].plot(multiples, [r[f"linear_best{m}"] for r in point["fixed"]], ":", color=line.get_color())
    axes[2].set_yscale("symlog", linthresh=max(1e-8, abs(point["fixed"][0][f"linear_best{n}"])))
    axes[2].set_ylabel("E[min of N ΔL]")
    axes[2].set_title("lines: Theorem B; dotted: −m_N σ‖g‖", fontsize=8)
    for ax in axes:
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xlabel("σ / σ_lin")
        ax.legend(fontsize=6)
    fig.suptitle(f"{title}: Theorem A and B at step {point['step']} (dashed: σ_lin)")
    fig.tight_layout()
    found["rs_theory.png"] = (fig, "Mean, P(improve) and best of N against σ, measured and predicted")

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, row in point["subspaces"].items():
        line = ax.plot(
            [s / point["sigma_linear"] for s in row["sigmas"]],
            row["best"],
            "o-",
            label=f"{name} (k={row['k']}, ρ/ρ_full={row['rho'] / row['rho_full']:.2g})",
        )[0]
        ax.axhline(row["pred_gain"], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_xlabel("σ / σ_lin (of the full space)")
    ax.set_ylabel(f"best of {point['sigma_star']['n']} ΔL (dotted: −G*_U)")
    ax.set_title(f"{title}: full space against k-subspaces")
    ax.legend(fontsize=6)
    fig.tight_layout()
    found["rs_subspaces.png"] = (fig, "Best of N in the full space and in the rolling, prefix and random subspaces")

    widths = summary["curves"].get(RANDOM_SEARCH_WIDTHS)
    if widths:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        dims = [r["dim"] for r in widths]
        axes[0].plot(
            dims, [r["best_over_linear"] for r in widths], "o-", label=f"best of {widths[0]['best_n']} / (−m_N σ‖g‖)"
        )
        axes[0].plot(dims, [r["p_improve"] / 0.5 for r in widths], "s-", label="P(ΔL<0) / ½")
        axes[0].plot(dims, [r["std_over_pred"] for r in widths], "^-", label="std(ΔL) / σ‖g‖-law")
        axes[0].axhline(1.0, color="gray", ls=":")
        axes[0].set_ylim(0.5, 1.5)
        axes[0].set_ylabel("measured / first-order law")
        axes[1].plot(dims, [r["es_cos"] for r in widths], "o", label="ES cosine measured")
        axes[1].plot(dims, [r["pred_es_cos"] for r in widths], "-", label="sqrt(N/(N+D+1))")
        axes[1].set_yscale("log")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("D (parameters)")
            ax.legend(fontsize=7)
        fig.suptitle(f"{title}: what stays flat in D (smallest σ)")
        fig.tight_layout()
        found["rs_dimension.png"] = (
            fig,
            "Dimension sweep: first-order law and best of N stay flat; the ES cosine falls",
        )

    points = summary["curves"][RANDOM_SEARCH_POINTS]
    if len(points) > 1:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        steps = [p["step"] for p in points]
        for key, label in (("grad_norm", "‖g‖"), ("trace_h", "tr H"), ("sigma_linear", "σ_lin")):
            ax.plot(steps, [abs(p[key]) for p in points], "o-", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{title}: along the run")
        ax.legend(fontsize=7)
        fig.tight_layout()
        found["rs_along_run.png"] = (fig, "‖g‖, tr H and σ_lin at each probe point")
    return found


def random_search_section(summary: dict, label: str, out: Path, index: int) -> list[str]:
    """Markdown (tables and figures) for one run with random-search points."""
    import matplotlib.pyplot as plt

    point = summary["curves"][RANDOM_SEARCH_POINTS][-1]
    parts = [
        f"## Random search: {label}",
        "",
        f"At step {point['step']}: D = {point['dim']}, ‖g‖ = {fmt(point['grad_norm'])}, tr H = {fmt(point['trace_h'])} "
        f"± {fmt(point['trace_h_se'])}, "
        f"‖H‖_F = {fmt(point['frob_h'])}, σ_lin = {fmt(point['sigma_linear'])}. The best-of-N prediction is within "
        f"{HOLDS_TOLERANCE:.0%} "
        f"up to σ = {fmt(holds_up_to(point))} σ_lin.",
        "",
        "### Theorem A and B on the fixed batch (predicted against measured)",
        "",
        render_markdown(sigma_table(point)),
        "",
        "### Held-out loss",
        "",
        render_markdown(sigma_table(point, "heldout_rows")),
        "",
        "### Noisy selection: best of N chosen on the batch, its gain on the batch and on held-out data",
        "",
        render_markdown(selection_table(point)),
        "",
        "### σ*, ES cosine",
        "",
        render_markdown(point_table(point)),
        "",
        "### Proposition C: full space against k-subspaces",
        "",
        render_markdown(subspace_table(point)),
        "",
    ]
    if summary["curves"].get(RANDOM_SEARCH_WIDTHS):
        parts += [
            "### Dimension sweep (smallest σ of the grid)",
            "",
            render_markdown(width_table(summary["curves"][RANDOM_SEARCH_WIDTHS])),
            "",
        ]
    for name, (figure, caption) in figures(summary, label).items():
        file = f"{Path(name).stem}_{index}.png"
        figure.savefig(out / file, dpi=120)
        plt.close(figure)
        parts += [f"### {caption}", "", f"![{caption}]({file})", ""]
    return parts
