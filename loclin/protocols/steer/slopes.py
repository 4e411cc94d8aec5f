"""Steering on held-out items (docs/science.md 9 and 11, claim C7): margin curves against α, the
slope at α = 0 of each direction, the null band of many random and shuffled-label directions, the
paired difference slope(δ̂) − slope(v̂) and the power the items give.

For item i and unit direction ŵ, m_i(α) = z(a⁺) − z(a⁻) with h_ℓ += α ν ŵ from position t − 1 on
(ν the mean residual norm there). slope_i(ŵ) is the least-squares slope of m_i over the α with
|α| ≤ SLOPE_RADIUS (geometry.steering.slope_at_zero); slope(ŵ) = mean_i slope_i(ŵ), with a percentile
bootstrap over items.
- **Null band:** slope of ``null_directions`` random Gaussian directions and as many shuffled-label
  CAA vectors v^π (each pair's sign flipped at random), fitted on α ∈ {−r, 0, r}: its 95th
  percentile of |slope| and its range.
- **Paired:** mean_i (slope_i(δ̂) − slope_i(v̂)), bootstrapped with the same resampled items.
- **Ratio** slope(δ̂) / slope(v̂): only where v̂'s interval excludes 0; a ratio over a denominator
  that may be 0 has no interval.
- **Power:** the smallest slope the items detect at 80% power, (z_0.975 + z_0.8) · s / sqrt(n),
  and the n at which v̂'s measured slope would be detected (geometry.intervals).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator

import torch

from loclin.callbacks.base import metric
from loclin.datamodules.contrast import contrast_chunks
from loclin.geometry.intervals import bootstrap_interval, detectable_effect, items_to_detect
from loclin.geometry.steering import sign_flipped_contrast, slope_at_zero
from loclin.lightning_modules.activations import answer_residuals, steered_last_logits
from loclin.protocols.steer.config import SLOPE_RADIUS

DIRECTIONS = ("caa", "delta", "s", "random", "shuffled")
NULL_KINDS = ("random", "shuffled")


def slope_alphas(alphas: list[float]) -> list[float]:
    """The α a slope is fitted over: |α| ≤ SLOPE_RADIUS (larger steps leave the linear regime: α = 1
    adds a vector as long as the residual itself)."""
    return [a for a in alphas if abs(a) <= SLOPE_RADIUS + 1e-9]


def steering_directions(found: dict, delta: torch.Tensor, layer: int, seed: int) -> dict[str, torch.Tensor]:
    """The directions steered at ``layer`` over every α: v̂, δ̂, ŝ and one draw of each null, a random
    unit vector and v^π, the CAA vector of one random sign flip of the items' contrasts."""
    differences = found["differences"][layer]
    generator = torch.Generator().manual_seed(seed + 1)
    random_direction = torch.randn(differences.shape[1], generator=generator, dtype=torch.float64)
    signs = torch.randint(0, 2, (differences.shape[0],), generator=generator, dtype=torch.float64) * 2 - 1
    return {
        "caa": found["caa"][layer],
        "delta": delta[layer],
        "s": found["s"][layer],
        "random": random_direction,
        "shuffled": sign_flipped_contrast(differences, signs),
    }


def null_directions(differences: torch.Tensor, count: int, seed: int) -> dict[str, torch.Tensor]:
    """``count`` random Gaussian directions and ``count`` shuffled-label vectors v^π = mean_i π_i d_i
    (π_i = ±1 with probability ½) from one layer's item contrasts ``differences`` (N × d): 2 × count × d."""
    generator = torch.Generator().manual_seed(seed + 7)
    n, dim = differences.shape
    signs = torch.randint(0, 2, (count, n), generator=generator, dtype=torch.float64) * 2 - 1
    return {
        "random": torch.randn(count, dim, generator=generator, dtype=torch.float64),
        "shuffled": sign_flipped_contrast(differences.double(), signs),
    }


def item_progress(total: int, label: str) -> Iterator[int]:
    """0 … total − 1 with progress: tqdm's bar in a terminal; in a log, a flushed line every tenth."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(range(total), desc=label, unit="item")
        return
    started, every = time.time(), max(1, total // 10)
    for index in range(total):
        yield index
        if (index + 1) % every == 0 or index + 1 == total:
            elapsed = time.time() - started
            left = elapsed / (index + 1) * (total - index - 1)
            print(f"[loclin] {label}: {index + 1}/{total} items, {elapsed:.0f} s, ~{left:.0f} s left", flush=True)


def unit(rows: torch.Tensor) -> torch.Tensor:
    return (rows / rows.norm(dim=-1, keepdim=True)).float()


@torch.no_grad()
def steering_curves(
    model,
    batch: dict[str, torch.Tensor],
    directions: dict[str, torch.Tensor],
    layer: int,
    alphas: list[float],
    batch_size: int,
    nulls: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Margin, p(a⁺)/(p(a⁺) + p(a⁻)) and accuracy against α for each direction, every item's slope,
    and (``nulls``: kind → R × d) every null direction's per-item slopes from α = ±r and 0, r the largest
    |α| of :func:`slope_alphas`.

    Each item's prompt runs once; the (direction, α) rows steer copies of its last token."""
    norm = float(
        torch.cat(
            [
                answer_residuals(model, model, part, "positive", -1)[layer].norm(dim=-1)
                for part in contrast_chunks(batch, batch_size)
            ]
        ).mean()
    )
    units = unit(torch.stack(list(directions.values())))
    vectors = (torch.tensor(alphas)[None, :, None] * norm * units[:, None, :]).reshape(-1, units.shape[1])
    # a null direction's slope needs only the outermost ±α of the fit (the symmetric pair cancels the
    # curvature as the full fit does) and the unsteered margin at α = 0, shared: 2 rows, not 4
    radius = max(abs(a) for a in slope_alphas(alphas))
    near = [-radius, radius]
    null_units = unit(torch.cat(list(nulls.values()))) if nulls else units[:0]
    null_vectors = (torch.tensor(near)[None, :, None] * norm * null_units[:, None, :]).reshape(-1, units.shape[1])
    margins = []
    for row in item_progress(len(batch["answer_pos"]), f"steering at layer {layer}"):
        tokens = batch["positive"][row, : batch["answer_pos"][row]]
        logits = steered_last_logits(model, layer, tokens, torch.cat([vectors, null_vectors])).double()
        margins.append(logits[:, batch["positive_token"][row]] - logits[:, batch["negative_token"][row]])
    margin = torch.stack(margins, 1)  # row × item
    main = margin[: len(vectors)].reshape(len(directions), len(alphas), -1)  # direction × α × item
    curves = {"alphas": list(alphas), "layer": layer, "residual_norm": norm, "item_slopes": {}}
    for name, per_alpha in zip(directions, main):
        curves[name] = {
            "margin": per_alpha.mean(1).tolist(),
            "p_positive": torch.sigmoid(per_alpha).mean(1).tolist(),
            "acc": (per_alpha > 0).double().mean(1).tolist(),
        }
    fitted = [i for i, a in enumerate(alphas) if a in slope_alphas(alphas)]
    for name, slopes in zip(directions, slope_at_zero([alphas[i] for i in fitted], main[:, fitted])):
        curves["item_slopes"][name] = slopes.tolist()
    if nulls:
        unsteered = main[0, alphas.index(0.0)] if 0.0 in alphas else None
        steered = margin[len(vectors) :].reshape(len(null_units), len(near), -1)  # null × α × item
        curves["null_item_slopes"] = {}
        offset = 0
        for kind, rows in nulls.items():
            part = steered[offset : offset + len(rows)]
            offset += len(rows)
            xs, ys = near, part
            if unsteered is not None:
                xs, ys = [0.0, *near], torch.cat([unsteered.expand(len(rows), 1, -1), part], 1)
            curves["null_item_slopes"][kind] = slope_at_zero(xs, ys).tolist()  # null × item
    return curves


def slope_metrics(curves: dict, layer: int, tag: str, draws: int, seed: int) -> dict:
    """Slopes per direction, the null band, the paired δ̂ − v̂ difference, the ratio (where v̂'s
    interval excludes 0) and the power; names ``steer.{tag}slope.…`` and ``steer.{tag}slope_ratio_delta_caa``."""
    metrics = {}
    items = {name: torch.tensor(curves["item_slopes"][name], dtype=torch.float64) for name in DIRECTIONS}
    n = len(items["caa"])
    where = f"at layer {layer} (α in units of the mean residual norm)"
    for name in DIRECTIONS:
        slope = float(items[name].mean())
        metrics[f"steer.{tag}slope.{name}"] = metric(slope, f"d margin / dα at α = 0 along {name} {where}")
    for kind, rows in curves.get("null_item_slopes", {}).items():
        per_direction = torch.tensor(rows, dtype=torch.float64).mean(1)
        metrics[f"steer.{tag}slope.null_{kind}_p95"] = metric(
            float(per_direction.abs().quantile(0.95)),
            f"95th percentile of |slope| over {len(rows)} {kind} null directions {where}",
        )
        metrics[f"steer.{tag}slope.null_{kind}_p95"]["band"] = [float(per_direction.min()), float(per_direction.max())]
    difference = items["delta"] - items["caa"]
    metrics[f"steer.{tag}slope.delta_minus_caa"] = metric(
        float(difference.mean()), f"mean over items of slope_i(δ̂) − slope_i(v̂) {where} (paired)"
    )
    for name in ("caa", "delta"):
        metrics[f"steer.{tag}slope.{name}_detectable"] = metric(
            detectable_effect(items[name].tolist()),
            f"the smallest slope along {name} that {n} items detect at 80% power (two-sided 5%)",
        )
    needed = items_to_detect(items["caa"].tolist())
    metrics[f"steer.{tag}slope.caa_items_needed"] = metric(
        float(needed) if needed else math.nan, "items at which v̂'s measured slope is detected at 80% power"
    )
    ratio = metric(math.nan, f"slope(δ̂) / slope(v̂) {where}")
    if draws:
        for name in DIRECTIONS:
            low, high = bootstrap_interval(lambda index, name=name: items[name][index].mean(), n, draws, seed + 5)
            metrics[f"steer.{tag}slope.{name}"]["interval"] = [float(low), float(high)]
        low, high = bootstrap_interval(lambda index: difference[index].mean(), n, draws, seed + 5)
        metrics[f"steer.{tag}slope.delta_minus_caa"]["interval"] = [float(low), float(high)]
        caa_low, caa_high = metrics[f"steer.{tag}slope.caa"]["interval"]
        if caa_low > 0 or caa_high < 0:
            ratio["value"] = float(items["delta"].mean() / items["caa"].mean())
            low, high = bootstrap_interval(
                lambda index: items["delta"][index].mean() / items["caa"][index].mean(), n, draws, seed + 5
            )
            ratio["interval"] = [float(low), float(high)]
        else:
            ratio["reason"] = f"v̂'s slope interval [{caa_low:.3g}, {caa_high:.3g}] covers 0: no ratio"
    metrics[f"steer.{tag}slope_ratio_delta_caa"] = ratio
    return metrics
