"""The C3 map: does the useful basis drift within 100 steps? Seeds of one system, each a run whose
first phase trains and whose phase at lr 0 (θ frozen, fresh batches) gives the stream that cannot
drift (docs/science.md 4 and 11).

The number read is the drift ratio r(L) = overlap of half-window bases L apart ÷ the noise ceiling,
at disjoint lags L ≥ W (callbacks.drift), over seeds (95% t-intervals, geometry.intervals):

- **Drift within 100 steps** at the largest measured disjoint lag L ≤ 100: *supported* when the
  upper bound of r(L) is < 0.5 and, for gradients, r(L) − r_frozen(L) (paired within seeds) has an
  upper bound < 0; *refuted* when the lower bound of r(L) is ≥ 0.5; else *undecided*, with the seeds
  that would decide it at the observed spread.
- **The null holds** when r_frozen's interval reaches 1 or its lower bound is ≥ NULL_FLOOR: a ratio
  well below 1 for a stream that cannot drift would say the ceiling, not the basis, moved.
- **The decay is seen** when r(W) − r(2W) (paired) has a lower bound > 0: the loss happens between the
  first disjoint lags rather than before them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from loclin.claims.c4 import paired, seeds_to_decide, threshold_verdict
from loclin.claims.c4_table import interval_text
from loclin.geometry.intervals import t_interval

DRIFT_THRESHOLD = 0.5  # "substantial drift": the ratio to the ceiling below one half
NULL_FLOOR = 0.8  # a frozen stream's ratio must reach this on its lower bound (or 1 within its interval)
HORIZON = 100  # "within 100 steps"
STREAMS = ("grad", "update")
KEPT = re.compile(
    r"^(grad|update)\.(overlap_ratio_lag\d+|noise_ceiling|half_life_ratio|plateau_ratio|overlap_lag\d+"
    r"|energy_topk|heldout_capture_h1)$"
)  # the drift numbers, and the spectrum's and held-out capture's that C1 reads (loclin.claims.c1)


def c3_record(name: str, summary: dict) -> dict:
    """A run's drift numbers: its first phase's as they are, its frozen phase's (lr 0) under ``frozen.``."""
    frozen = next((p["name"] for p in summary.get("phases", [])[1:] if p.get("optim", {}).get("lr") == 0), None)
    metrics = {}
    for key, entry in summary["metrics"].items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(value, (int, float)):
            continue
        if KEPT.match(key):
            metrics[key] = value
        elif frozen and key.startswith(f"{frozen}.") and KEPT.match(key[len(frozen) + 1 :]):
            metrics[f"frozen.{key[len(frozen) + 1 :]}"] = value
    heldout = summary["metrics"].get("grad.heldout_capture_h1", {})
    if "baseline" in heldout:
        metrics["grad.random_capture"] = heldout["baseline"]  # k/D, a random k-subspace's capture
    return {
        "map": "c3",
        "name": name,
        "system": re.sub(r"_seed\d+$", "", name),
        "seed": summary.get("seed"),
        "window": summary.get("geometry", {}).get("window"),
        "k": summary.get("geometry", {}).get("k"),
        "frozen_phase": frozen,
        "metrics": metrics,
    }


def is_drift_run(summary: dict) -> bool:
    return any(KEPT.match(key) and "ratio_lag" in key for key in summary.get("metrics", {}))


def c3_systems(records: list[dict]) -> dict[str, list[dict]]:
    systems: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: (r["system"], r["seed"] or 0)):
        systems.setdefault(record["system"], []).append(record)
    return systems


def ratio_lags(group: list[dict], stream: str, prefix: str = "") -> list[int]:
    pattern = re.compile(rf"^{re.escape(prefix)}{stream}\.overlap_ratio_lag(\d+)$")
    return sorted({int(m.group(1)) for r in group for key in r["metrics"] if (m := pattern.match(key))})


def series(group: list[dict], key: str) -> list[float]:
    return [float(r["metrics"].get(key, math.nan)) for r in group]


def headline_lag(group: list[dict], stream: str) -> int | None:
    """The largest disjoint lag ≤ HORIZON measured in every seed (None when there is none)."""
    lags = [lag for lag in ratio_lags(group, stream) if lag <= HORIZON]
    return lags[-1] if lags else None


def null_word(group: list[dict], lag: int) -> str:
    """*holds* / *fails* / *not measured* for the frozen-θ gradient ratio at ``lag``."""
    values = series(group, f"frozen.grad.overlap_ratio_lag{lag}")
    _, low, high = t_interval(values)
    if all(math.isnan(v) for v in values):
        return "not measured"
    if math.isnan(low):
        return "holds (one seed)" if values[0] >= NULL_FLOOR else "fails (one seed)"
    return "holds" if high >= 1 or low >= NULL_FLOOR else "fails"


def drift_word(group: list[dict], stream: str, lag: int) -> str:
    """The C3 verdict at ``lag`` (the module's rule); an undecided one names the seeds that would decide."""
    ratio = series(group, f"{stream}.overlap_ratio_lag{lag}")
    word = {"supported": "refuted", "refuted": "supported"}.get(threshold_verdict(ratio, DRIFT_THRESHOLD), "undecided")
    if word == "supported" and stream == "grad":
        frozen = series(group, f"frozen.grad.overlap_ratio_lag{lag}")
        if not all(math.isnan(v) for v in frozen):
            high = t_interval(paired(ratio, frozen))[2]
            word = "supported" if not math.isnan(high) and high < 0 else "undecided"
    if word == "undecided":
        n = seeds_to_decide(ratio, DRIFT_THRESHOLD)
        return f"undecided (n ≈ {n} would decide)" if n and n > len(group) else "undecided"
    return word


def decay_word(group: list[dict], stream: str, window: int) -> str:
    """*decays from W to 2W*, *flat from W* (the paired difference's interval covers 0) or *–*."""
    first, second = f"{stream}.overlap_ratio_lag{window}", f"{stream}.overlap_ratio_lag{2 * window}"
    difference = paired(series(group, first), series(group, second))
    _, low, high = t_interval(difference)
    if math.isnan(low):
        return "–"
    return "decays from W to 2W" if low > 0 else ("flat from W" if high >= 0 else "rises from W to 2W")


def c3_table(records: list[dict]) -> list[list[str]]:
    """One row per system, stream and disjoint lag: r(L) [95%], the frozen null's r(L) [95%] and the paired
    difference, the ceiling, and at the headline lag the verdict words."""
    rows = [["system", "stream", "lag L", "r(L) [95%]", "frozen θ r(L)", "r − r_frozen", "ceiling", "seeds", "reading"]]
    for system, group in c3_systems(records).items():
        window = group[0].get("window") or 0
        for stream in STREAMS:
            headline = headline_lag(group, stream)
            for lag in ratio_lags(group, stream):
                ratio = series(group, f"{stream}.overlap_ratio_lag{lag}")
                frozen = series(group, f"frozen.{stream}.overlap_ratio_lag{lag}")
                reading = ""
                if lag == headline:
                    reading = f"drift ≤ {HORIZON} steps: {drift_word(group, stream, lag)}"
                    if stream == "grad":
                        reading += f"; null {null_word(group, lag)}"
                if lag == window:
                    reading = "; ".join(filter(None, [reading, decay_word(group, stream, window)]))
                rows.append(
                    [
                        system,
                        stream,
                        f"{lag} ({lag / window:.3g}W)" if window else str(lag),
                        interval_text(ratio),
                        interval_text(frozen),
                        interval_text(paired(ratio, frozen)),
                        interval_text(series(group, f"{stream}.noise_ceiling")),
                        ",".join(str(r["seed"]) for r in group),
                        reading,
                    ]
                )
    return rows


def c3_verdict(records: list[dict]) -> str:
    """A sentence per system: the gradient and update words at the headline lag, the null, the decay."""
    sentences = []
    for system, group in c3_systems(records).items():
        window = group[0].get("window") or 0
        parts = []
        for stream in STREAMS:
            lag = headline_lag(group, stream)
            if lag is None:
                continue
            ratio = interval_text(series(group, f"{stream}.overlap_ratio_lag{lag}"))
            word, decay = drift_word(group, stream, lag), decay_word(group, stream, window)
            parts.append(f"{stream} ratio at lag {lag} {ratio}: {word} ({decay})")
        lag = headline_lag(group, "grad")
        null = null_word(group, lag) if lag else "not measured"
        sentences.append(f"{system} ({len(group)} seeds): " + "; ".join(parts) + f". The frozen-θ null {null}.")
    return " ".join(sentences)


def c3_rows(name: str, records: list[dict]) -> list[list[str]]:
    """The scorecard's C3 rows: one per system, the gradient stream at its headline lag."""
    rows = []
    for system, group in c3_systems(records).items():
        lag = headline_lag(group, "grad")
        if lag is None:
            continue
        frozen = series(group, f"frozen.grad.overlap_ratio_lag{lag}")
        rows.append(
            [
                f"C3: the useful basis drifts within {HORIZON} steps (ratio to the ceiling < {DRIFT_THRESHOLD})",
                system,
                "qualitative",
                f"{interval_text(series(group, f'grad.overlap_ratio_lag{lag}'))} at lag {lag}",
                f"seeds {','.join(str(r['seed']) for r in group)}",
                f"frozen θ (lr 0): {interval_text(frozen)}, null {null_word(group, lag)}",
                drift_word(group, "grad", lag),
                f"[map {name}](#map-{name})",
            ]
        )
    return rows


def c3_figures(records: list[dict], out: Path) -> list[tuple[str, str]]:
    """r(L) against L with 95% bands, per system and stream, beside the frozen-θ null."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for system, group in c3_systems(records).items():
        fig, axes = plt.subplots(1, len(STREAMS), figsize=(9, 3.4), sharey=True, constrained_layout=True)
        for ax, stream in zip(axes, STREAMS):
            for prefix, label, colour in (("", "training", "C0"), ("frozen.", "frozen θ (lr 0)", "C2")):
                lags = ratio_lags(group, stream, prefix)
                if not lags:
                    continue
                stats = [t_interval(series(group, f"{prefix}{stream}.overlap_ratio_lag{lag}")) for lag in lags]
                ax.plot(lags, [s[0] for s in stats], "o-", color=colour, label=label)
                if not any(math.isnan(s[1]) for s in stats):
                    ax.fill_between(lags, [s[1] for s in stats], [s[2] for s in stats], color=colour, alpha=0.2)
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.axhline(DRIFT_THRESHOLD, color="C3", lw=0.8, ls="--", label=f"drift threshold {DRIFT_THRESHOLD}")
            ax.set_xscale("log")
            measured = ratio_lags(group, stream)
            ax.set_xticks(measured, [str(lag) for lag in measured], fontsize=7)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("lag L (steps; disjoint windows, L ≥ W)")
            ax.set_title(f"{stream}", fontsize=10)
            if not ratio_lags(group, stream, "frozen."):
                ax.text(0.02, 0.04, "no frozen-θ curve: its updates are 0", transform=ax.transAxes, fontsize=7)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("overlap ÷ noise ceiling [95%]")
        fig.suptitle(f"C3 drift, {system}: {len(group)} seeds", fontsize=10)
        name = f"c3_ratio_{re.sub(r'[^A-Za-z0-9_]+', '_', system)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append((name, f"C3, {system}: the drift ratio against lag, training and frozen θ"))
    return made
