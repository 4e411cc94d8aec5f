"""analyze.py for steering runs (``protocol: steer``): a table against the paper's 0.58, a
per-layer cosine plot with the random band, and the steering curves."""

from __future__ import annotations

from pathlib import Path

PAPER_COS_DELTA_CAA = 0.58  # arXiv 2606.10929, claim C6 (Qwen-0.5B, BoolQ statements)


ALIGNMENT_COLUMNS = {
    "max cos(δ, v) [95%]": "steer.cos_delta_caa.max",
    "mean cos(δ, v) [95%]": "steer.cos_delta_caa.mean",
    "max cos(δ at t−1, v) [95%]": "steer.prompt_end.cos_delta_caa.max",
    "mean cos(δ at t−1, v) [95%]": "steer.prompt_end.cos_delta_caa.mean",
    "max cos(Adam δ, v)": "steer.cos_adam_caa.max",
    "max cos(s, v)": "steer.cos_s_caa.max",
    "shuffled-label p95": "steer.shuffled_p95",
    "shuffled p95, worst block": "steer.shuffled_max_p95",
    "random p95": "steer.random_p95",
    "η spread": "steer.flatness_spread",
}
STEERING_COLUMNS = {
    "slope v̂ [95%]": "slope.caa",
    "slope δ̂ [95%]": "slope.delta",
    "slope ŝ": "slope.s",
    "slope random [95%]": "slope.random",
    "slope v^π [95%]": "slope.shuffled",
    "δ̂ : v̂ [95%]": "slope_ratio_delta_caa",
}


def run_label(s: dict, label) -> str:
    return f"{label(s)} (one seed, items bootstrapped)"


def steer_table(summaries: list[dict], label) -> list[list[str]]:
    """One row per run: cos(δ, v) with δ read at the answer token t and at t − 1, against the
    nulls, each with its 95% bootstrap interval over items."""
    from loclin.reports.tables import fmt, fmt_entry

    rows = [["run", *ALIGNMENT_COLUMNS, "paper cos(δ, v)"]]
    for s in summaries:
        rows.append(
            [
                run_label(s, label),
                *(fmt_entry(s["metrics"].get(n)) for n in ALIGNMENT_COLUMNS.values()),
                fmt(PAPER_COS_DELTA_CAA),
            ]
        )
    return rows


def steering_table(summaries: list[dict], label) -> list[list[str]]:
    """One row per run and steered block (the middle one, and the one where cos(δ, v) peaks)."""
    from loclin.reports.tables import fmt_entry

    rows = [["run", "block", *STEERING_COLUMNS]]
    for s in summaries:
        metrics, middle = s["metrics"], s["curves"]["steer.curves"]["layer"]
        peak = metrics.get("steer.peak_layer", {}).get("value")
        blocks = [("", f"{middle} (middle{', peak' if peak == middle else ''})")]
        if peak is not None and peak != middle:
            blocks.append(("at_peak.", f"{peak} (peak)"))
        for tag, where in blocks:
            rows.append(
                [
                    run_label(s, label),
                    where,
                    *(fmt_entry(metrics.get(f"steer.{tag}{n}")) for n in STEERING_COLUMNS.values()),
                ]
            )
    return rows


def steer_verdict(summaries: list[dict], label) -> str:
    """Where cos(δ, v) reaches the paper's 0.58, if anywhere; else the best value and its interval."""
    from loclin.reports.tables import fmt_entry

    best = []
    for s in summaries:
        for name in ("steer.cos_delta_caa.max", "steer.prompt_end.cos_delta_caa.max"):
            entry = s["metrics"].get(name)
            if entry:
                best.append((entry["value"], entry, name, s))
    if not best:
        return ""
    best.sort(key=lambda row: -row[0])
    reached = [row for row in best if row[1].get("interval", [row[0]])[0] >= PAPER_COS_DELTA_CAA]
    where = lambda row: f"{label(row[3])}, δ read at {'t − 1' if 'prompt_end' in row[2] else 't'}: {fmt_entry(row[1])}"  # noqa: E731
    if reached:
        return (
            f"cos(δ, v) reaches {PAPER_COS_DELTA_CAA} (lower 95% bound above it) in: "
            + "; ".join(where(row) for row in reached)
            + "."
        )
    return (
        f"cos(δ, v) reaches {PAPER_COS_DELTA_CAA} with its whole interval nowhere. Best: {where(best[0])} (max over "
        "blocks; the block's own interval is in the layer plot)."
    )


def layer_figure(layers: dict, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    x = list(range(len(layers["cos_delta_caa"])))
    ax.fill_between(
        x,
        [-p for p in layers["random_p95"]],
        layers["random_p95"],
        color="gray",
        alpha=0.2,
        label="random directions, 95% of |cos|",
    )
    if "shuffled_p95" in layers:
        ax.fill_between(
            x,
            [-p for p in layers["shuffled_p95"]],
            layers["shuffled_p95"],
            color="tab:purple",
            alpha=0.12,
            label="shuffled-label CAA, 95% of |cos(δ, v^π)|",
        )
    (line,) = ax.plot(x, layers["cos_delta_caa"], marker="o", label="cos(δ, v): one SGD step, δ at t")
    if "cos_delta_caa_interval" in layers:
        low, high = zip(*layers["cos_delta_caa_interval"])
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25, label="cos(δ, v): 95% bootstrap over items")
    if "cos_delta_caa_prompt_end" in layers:
        ax.plot(x, layers["cos_delta_caa_prompt_end"], marker="v", label="cos(δ, v): δ at t − 1")
    ax.plot(x, layers["cos_adam_caa"], marker="^", ls="--", label="cos(δ_Adam, v)")
    ax.plot(x, layers["cos_s_caa"], marker="s", label="cos(s, v): −∂ℓ/∂h at t − 1")
    ax.axhline(PAPER_COS_DELTA_CAA, color="k", ls=":", label=f"paper cos(δ, v) = {PAPER_COS_DELTA_CAA}")
    ax.set_xlabel("block ℓ")
    ax.set_ylabel("cosine with the CAA vector v_ℓ")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def flatness_figure(flatness: dict, title: str):
    """cos(δ_ℓ(η), v_ℓ) per block for every η: flat in η means δ is first order in the step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for eta, cosines in sorted(flatness.items(), key=lambda item: float(item[0])):
        ax.plot(range(len(cosines)), cosines, marker="o", label=f"η = {float(eta):g}")
    ax.set_xlabel("block ℓ")
    ax.set_ylabel("cos(δ_ℓ(η), v_ℓ)")
    ax.set_title(f"{title}: flatness in the step size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


DIRECTION_LABELS = {
    "caa": "v̂ (CAA)",
    "delta": "δ̂ (one step)",
    "s": "ŝ (−∂ℓ/∂h)",
    "random": "random",
    "shuffled": "v̂^π (shuffled labels)",
}


def curves_figure(curves: dict, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, ylabel in zip(
        axes, ("margin", "p_positive", "acc"), ("margin z(a⁺) − z(a⁻)", "p(a⁺) / (p(a⁺) + p(a⁻))", "accuracy")
    ):
        for name, text in DIRECTION_LABELS.items():
            if name in curves:
                ax.plot(curves["alphas"], curves[name][key], marker="o", label=text)
        ax.set_xlabel("α (units of the mean residual norm)")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: steering at block {curves['layer']}")
    fig.tight_layout()
    return fig


def build_steer_report(summaries: list[dict], runs: list[Path], out: Path, label) -> str:
    import matplotlib.pyplot as plt

    from loclin.reports.tables import render_markdown, render_text

    table, steered = steer_table(summaries, label), steering_table(summaries, label)
    parts = [
        "# loclin steering report",
        "",
        f"Runs: {', '.join(f'`{r}`' for r in runs)}",
        "",
        "## Alignment of the one-step shift δ with CAA",
        "",
        render_markdown(table),
        "",
    ]
    parts += [
        steer_verdict(summaries, label),
        "",
        "## Steering on held-out items (margin slope at α = 0)",
        "",
        render_markdown(steered),
        "",
    ]
    for i, s in enumerate(summaries):
        for name, figure, caption in (
            (
                f"steer_layers_{i}.png",
                layer_figure(s["curves"]["steer.layers"], label(s)),
                "Cosine with the CAA vector per block, random band",
            ),
            (
                f"steer_flatness_{i}.png",
                flatness_figure(s["curves"]["steer.flatness"], label(s)),
                "cos(δ, v) per block at each step size η",
            ),
            (
                f"steer_curves_{i}.png",
                curves_figure(s["curves"]["steer.curves"], label(s)),
                "Steering curves on held-out items",
            ),
            *(
                [
                    (
                        f"steer_curves_peak_{i}.png",
                        curves_figure(s["curves"]["steer.curves_at_peak"], label(s)),
                        "Steering curves at the peak block",
                    )
                ]
                if s["curves"].get("steer.curves_at_peak", {}).get("layer", s["curves"]["steer.curves"]["layer"])
                != s["curves"]["steer.curves"]["layer"]
                else []
            ),
        ):
            figure.savefig(out / name, dpi=120)
            plt.close(figure)
            parts += [f"### {caption} ({label(s)})", "", f"![{caption}]({name})", ""]
    (out / "report.md").write_text("\n".join(parts))
    return render_text(table) + "\n\n" + render_text(steered)
