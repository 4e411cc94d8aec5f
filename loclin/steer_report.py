"""analyze.py for steering runs (``kind: steer``): a table against the paper's 0.58, a
per-layer cosine plot with the random band, and the steering curves."""

from __future__ import annotations

from pathlib import Path

PAPER_COS_DELTA_CAA = 0.58  # arXiv 2606.10929, claim C6 (Qwen-0.5B, BoolQ statements)


def steer_table(summaries: list[dict], label) -> list[list[str]]:
    """One row per run; cosines and slopes with their 95% bootstrap interval over items."""
    from loclin.report import fmt, fmt_entry

    rows = [["run", "max cos(δ, v) [95%]", "mean cos(δ, v) [95%]", "shuffled-label p95", "random p95", "max cos(s, v)", "max cos(Adam δ, v)", "slope v̂ [95%]", "slope δ̂ [95%]", "slope ŝ", "slope random", "δ̂ : v̂ [95%]", "η spread", "paper cos(δ, v)"]]
    names = ["steer.cos_delta_caa.max", "steer.cos_delta_caa.mean", "steer.shuffled_p95", "steer.random_p95", "steer.cos_s_caa.max", "steer.cos_adam_caa.max", "steer.slope.caa", "steer.slope.delta", "steer.slope.s", "steer.slope.random", "steer.slope_ratio_delta_caa", "steer.flatness_spread"]
    for s in summaries:
        rows.append([f"{label(s)} (one seed, items bootstrapped)", *(fmt_entry(s["metrics"].get(n)) for n in names), fmt(PAPER_COS_DELTA_CAA)])
    return rows


def layer_figure(layers: dict, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    x = list(range(len(layers["cos_delta_caa"])))
    ax.fill_between(x, [-p for p in layers["random_p95"]], layers["random_p95"], color="gray", alpha=0.2, label="random directions, 95% of |cos|")
    if "shuffled_p95" in layers:
        ax.fill_between(x, [-p for p in layers["shuffled_p95"]], layers["shuffled_p95"], color="tab:purple", alpha=0.12, label="shuffled-label CAA, 95% of |cos(δ, v^π)|")
    (line,) = ax.plot(x, layers["cos_delta_caa"], marker="o", label="cos(δ, v): one SGD step")
    if "cos_delta_caa_interval" in layers:
        low, high = zip(*layers["cos_delta_caa_interval"])
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25, label="cos(δ, v): 95% bootstrap over items")
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


def curves_figure(curves: dict, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, ylabel in zip(axes, ("margin", "p_positive", "acc"), ("margin z(a⁺) − z(a⁻)", "p(a⁺) / (p(a⁺) + p(a⁻))", "accuracy")):
        for name in ("caa", "delta", "s", "random"):
            ax.plot(curves["alphas"], curves[name][key], marker="o", label={"caa": "v̂ (CAA)", "delta": "δ̂ (one step)", "s": "ŝ (−∂ℓ/∂h)", "random": "random"}[name])
        ax.set_xlabel("α (units of the mean residual norm)")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: steering at block {curves['layer']}")
    fig.tight_layout()
    return fig


def build_steer_report(summaries: list[dict], runs: list[Path], out: Path, label) -> str:
    import matplotlib.pyplot as plt

    from loclin.report import render_markdown, render_text

    table = steer_table(summaries, label)
    parts = ["# loclin steering report", "", f"Runs: {', '.join(f'`{r}`' for r in runs)}", "", render_markdown(table), ""]
    for i, s in enumerate(summaries):
        for name, figure, caption in (
            (f"steer_layers_{i}.png", layer_figure(s["curves"]["steer.layers"], label(s)), "Cosine with the CAA vector per block, random band"),
            (f"steer_flatness_{i}.png", flatness_figure(s["curves"]["steer.flatness"], label(s)), "cos(δ, v) per block at each step size η"),
            (f"steer_curves_{i}.png", curves_figure(s["curves"]["steer.curves"], label(s)), "Steering curves on held-out items"),
        ):
            figure.savefig(out / name, dpi=120)
            plt.close(figure)
            parts += [f"### {caption} ({label(s)})", "", f"![{caption}]({name})", ""]
    (out / "report.md").write_text("\n".join(parts))
    return render_text(table)
