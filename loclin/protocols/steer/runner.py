"""The steering experiment (``protocol: steer``, docs/science.md 9; claims C6, C7) on a causal LM.

On n_train contrast items (x, a⁺, a⁻), at the answer position t (first token where x ⊕ a⁺ and
x ⊕ a⁻ differ), for every block ℓ:
- v_ℓ: CAA vector, mean h_ℓ(x ⊕ a⁺)[t] − h_ℓ(x ⊕ a⁻)[t];
- δ_ℓ(η): shift of mean h_ℓ(x ⊕ a⁺)[t] after one step on L = mean −log p(a⁺ | x) over all
  weights or a fresh LoRA adapter (``stepped``; SGD at each η of ``etas``; Adam's first step
  at ``adam_eta``);
- s_ℓ: −mean ∂ℓ_i/∂h_ℓ at t − 1, the position whose residual scores the answer;
- cos(δ_ℓ, v_ℓ), cos(s_ℓ, v_ℓ) against random unit directions (RMS 1/sqrt(d)).
Then on n_heldout other items, steering at ``steer_layer``: h += α ν ŵ from position t − 1 on
(ν the mean residual norm there), ŵ ∈ {v̂, δ̂, ŝ, random}, α ∈ ``alphas``; the margin
z(a⁺) − z(a⁻), p(a⁺)/(p(a⁺)+p(a⁻)) and accuracy (margin > 0) against α, and slopes at α = 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.base import metric
from loclin.config import ConfigError
from loclin.datamodules.contrast import (
    TemplateError,
    contrast_chunks,
    encode_contrasts,
    load_items,
    special_prefix,
    split_items,
)
from loclin.geometry.intervals import bootstrap_interval
from loclin.geometry.steering import (
    cosine_per_layer,
    random_cosine_baseline,
    shuffled_label_cosines,
)
from loclin.lightning_modules.activations import answer_residuals, decoder_blocks, residual_stream
from loclin.lightning_modules.causal_lm import AdapterError, add_lora_adapter, load_causal_lm
from loclin.lightning_modules.optim import OptimizerSpec
from loclin.model_source import resolve_model_source
from loclin.protocols.steer.slopes import null_directions, slope_metrics, steering_curves, steering_directions
from loclin.protocols.steer.step_shift import first_step_direction, one_step_shift
from loclin.runs.rundir import SUMMARY_FILE, write_config, write_json
from loclin.schema import resolve_asset_file

# where δ is read: the answer token t (CAA's own read position: its letter token, index −2 of
# "(A)"; h at t does not see the tokens after it, so the full answer reads the same) and the
# last prompt token t − 1, the residual that scores the answer. v is always read at t.
READ_POSITIONS = ("answer", "prompt_end")
READ_OFFSETS = (0, -1)


def answer_loss(call, part: dict[str, torch.Tensor]) -> torch.Tensor:
    """mean −log p(a⁺ | x): logits at t − 1 against a⁺'s token at t (sum over the chunk). Only
    that position goes through the unembedding (``logits_to_keep``): Gemma's is 262k wide."""
    scored = (part["answer_pos"] - 1)[:, None]
    logits = call(input_ids=part["positive"], attention_mask=part["mask"], logits_to_keep=scored).logits
    return F.cross_entropy(logits[:, 0], part["positive_token"], reduction="sum")


def measure_directions(model, batch: dict[str, torch.Tensor], cfg: DictConfig) -> dict:
    """v (CAA), s, and the one-step shifts, each L×d; ``differences`` and ``item_shifts`` keep the
    per-item terms (L×N×d) whose means they are, for the bootstrap and the shuffled-label null."""
    s = cfg.steer
    n = len(batch["answer_pos"])
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # every weight, or the adapter
    total_gradient, s_sum, differences = None, None, []
    for part in contrast_chunks(batch, s.batch_size):
        with torch.no_grad():
            positive = answer_residuals(model, model, part, "positive")
            negative = answer_residuals(model, model, part, "negative")
        differences.append(positive.double() - negative.double())
        # one backward gives both ∇_θ L (the step) and ∂L/∂h_ℓ (s_ℓ)
        with residual_stream(model) as captured:
            loss = answer_loss(model, part) / n
        layers = [captured[i] for i in range(len(captured))]
        grads = torch.autograd.grad(loss, [p for _, p in named] + layers)
        gradient = {name: g for (name, _), g in zip(named, grads[: len(named)])}
        total_gradient = gradient if total_gradient is None else {k: total_gradient[k] + gradient[k] for k in gradient}
        rows = torch.arange(len(part["answer_pos"]))
        s_part = -torch.stack([g[rows, part["answer_pos"] - 1].sum(0) for g in grads[len(named) :]]).double()
        s_sum = s_part if s_sum is None else s_sum + s_part
    differences = torch.cat(differences, 1)  # L × N × d
    caa = differences.mean(1)

    def readout(call):  # h at each read position for every item: P × L × N × d
        parts = [
            answer_residuals(model, call, part, "positive", READ_OFFSETS)
            for part in contrast_chunks(batch, s.batch_size)
        ]
        return torch.cat(parts, 2).double()

    with torch.no_grad():
        base = readout(model)  # h at θ, shared by every shift
    item_shifts = {}
    for eta in map(float, s.etas):  # plain SGD: d = g whatever η, but taken as the optimizer takes it
        sgd = first_step_direction(model, total_gradient, OptimizerSpec("sgd", lr=eta))
        item_shifts[eta] = one_step_shift(model, sgd, eta, readout, base)
    adam_step = first_step_direction(model, total_gradient, OptimizerSpec("adam", lr=float(s.adam_eta)))
    adam = one_step_shift(model, adam_step, float(s.adam_eta), readout, base)
    found = {"caa": caa, "s": s_sum, "differences": differences}
    for index, position in enumerate(READ_POSITIONS):
        found[position] = {
            "shifts": {eta: shift[index].mean(1) for eta, shift in item_shifts.items()},
            "adam": adam[index].mean(1),
            "item_shifts": {eta: shift[index] for eta, shift in item_shifts.items()},
        }
    return found


def cosine_intervals(
    differences: torch.Tensor, item_shifts: torch.Tensor, draws: int, seed: int
) -> dict[str, torch.Tensor]:
    """Bootstrap over the measured items (resampled jointly for δ and v): 95% intervals of
    cos(δ_ℓ, v_ℓ) per layer, and of its max and mean over layers."""

    def statistic(index: torch.Tensor) -> torch.Tensor:
        cos = cosine_per_layer(item_shifts[:, index].mean(1), differences[:, index].mean(1))
        return torch.cat([cos, cos.max()[None], cos.mean()[None]])

    low, high = bootstrap_interval(statistic, differences.shape[1], draws, seed)
    return {
        "layers": torch.stack([low[:-2], high[:-2]], 1),
        "max": low[-2:-1].tolist() + high[-2:-1].tolist(),
        "mean": low[-1:].tolist() + high[-1:].tolist(),
    }


def alignment_metrics(
    found: dict, position: str, eta: float, cfg: DictConfig, random_rms: float
) -> tuple[dict, dict, dict]:
    """cos(δ_ℓ, v_ℓ) with δ read at ``position`` (READ_POSITIONS): max and mean over blocks with
    bootstrap intervals, Adam's first step, and the flatness in η. Names carry the position
    (``steer.prompt_end.…``) except at the answer token, the headline."""
    s = cfg.steer
    read = found[position]
    tag = "" if position == "answer" else f"{position}."
    where = "at t" if position == "answer" else "at t − 1"
    caa = found["caa"]
    cos_delta = cosine_per_layer(read["shifts"][eta], caa)
    cos_adam = cosine_per_layer(read["adam"], caa)
    metrics = {}
    steps = (
        ("delta", "δ_ℓ", cos_delta, f"one SGD step η={eta}"),
        ("adam", "δ_ℓ^Adam", cos_adam, f"Adam's first step η={s.adam_eta}"),
    )
    for name, symbol, cosines, step in steps:
        metrics[f"steer.{tag}cos_{name}_caa.max"] = metric(
            float(cosines.max()), f"max over layers of cos({symbol}, v_ℓ), δ read {where}, {step}", random_rms
        )
        metrics[f"steer.{tag}cos_{name}_caa.mean"] = metric(
            float(cosines.mean()), f"mean over layers of cos({symbol}, v_ℓ), δ read {where}", random_rms
        )
    suffix = "" if position == "answer" else f"_{position}"
    curves = {f"cos_delta_caa{suffix}": cos_delta.tolist(), f"cos_adam_caa{suffix}": cos_adam.tolist()}
    flatness = {str(e): cosine_per_layer(shift, caa).tolist() for e, shift in read["shifts"].items()}
    spread = max(max(c) - min(c) for c in zip(*flatness.values()))
    metrics[f"steer.{tag}flatness_spread"] = metric(
        spread,
        (
            f"max over blocks of the range of cos(δ_ℓ(η), v_ℓ) over η ∈ {list(s.etas)}, δ read {where}: 0 when δ is "
            "first order in η"
        ),
    )
    if s.bootstrap:
        intervals = cosine_intervals(found["differences"], read["item_shifts"][eta], s.bootstrap, cfg.seed)
        metrics[f"steer.{tag}cos_delta_caa.max"]["interval"] = intervals["max"]
        metrics[f"steer.{tag}cos_delta_caa.mean"]["interval"] = intervals["mean"]
        curves[f"cos_delta_caa{suffix}_interval"] = intervals["layers"].tolist()
    return metrics, curves, flatness


def run_steering(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """The whole steering experiment (a resumed run starts it again); a template that does not
    fit the tokenizer, found once the items are tokenized, or a LoRA adapter that does not fit the
    model, is a ConfigError."""
    try:
        return measure_steering(cfg, run_dir)
    except (TemplateError, AdapterError) as error:
        raise ConfigError(str(error)) from None


def measure_steering(cfg: DictConfig, run_dir: Path) -> dict:
    started = time.time()
    write_config(run_dir, OmegaConf.to_yaml(cfg))
    torch.manual_seed(cfg.seed)
    s = cfg.steer
    model, tokenizer = load_causal_lm(resolve_model_source(s.model))
    if s.stepped == "lora":  # B = 0: the step moves B, and the activations through (α/r) ΔB A
        model = add_lora_adapter(
            model, s.lora.rank, s.lora.alpha, s.lora.dropout, s.lora.target_modules, s.lora.fan_in_fan_out
        )
    model.eval()  # parameters keep requires_grad: s_ℓ differentiates through the hooked h_ℓ
    items = load_items(s.source, resolve_asset_file(s.data, ""), s.template, s.yes_answer, s.no_answer)
    encoded = encode_contrasts(tokenizer, items, s.special_tokens)
    keep = [i for i in range(len(items)) if int(encoded["answer_pos"][i]) < s.max_tokens]
    print(
        f"[loclin] steering: {len(keep)} of {len(items)} {s.source} items fit steer.max_tokens={s.max_tokens}; "
        f"{s.n_train} to measure, {s.n_heldout} held out",
        flush=True,
    )
    train, heldout = split_items([items[i] for i in keep], s.n_train, s.n_heldout, cfg.seed)
    train_batch, heldout_batch = (encode_contrasts(tokenizer, part, s.special_tokens) for part in (train, heldout))
    print("[loclin] steering: CAA vectors, gradient and s_ℓ on the measured items", flush=True)
    found = measure_directions(model, train_batch, cfg)
    caa, grad_direction = found["caa"], found["s"]
    eta = float(s.etas[len(s.etas) // 2])
    blocks = len(decoder_blocks(model))
    baseline = random_cosine_baseline(caa, samples=s.random_samples, seed=cfg.seed)
    metrics, layer_curves, flatness = (
        {},
        {"random_rms": baseline["rms"].tolist(), "random_p95": baseline["p95_abs"].tolist()},
        {},
    )
    for position in READ_POSITIONS:
        tagged, curves_here, flat = alignment_metrics(found, position, eta, cfg, float(baseline["rms"].mean()))
        metrics.update(tagged)
        layer_curves.update(curves_here)
        flatness[position] = flat
    cos_s = cosine_per_layer(grad_direction, caa)
    metrics["steer.cos_s_caa.max"] = metric(
        float(cos_s.max()), "max over layers of cos(s_ℓ, v_ℓ), s = −mean ∂ℓ/∂h at t − 1", float(baseline["rms"].mean())
    )
    metrics["steer.random_rms"] = metric(
        float(baseline["rms"].mean()),
        (
            f"RMS cos of {s.random_samples} random directions with v (1/sqrt(d) = "
            f"{float(baseline['expected_rms'][0]):.4f})"
        ),
    )
    metrics["steer.random_p95"] = metric(
        float(baseline["p95_abs"].mean()), "95th percentile of |cos| of random directions with v"
    )
    layer_curves["cos_s_caa"] = cos_s.tolist()
    delta = found["answer"]["shifts"][eta]
    cos_delta = cosine_per_layer(delta, caa)
    middle = s.steer_layer if s.steer_layer is not None else blocks // 2
    peak = int(cos_delta.argmax())
    metrics["steer.peak_layer"] = metric(
        peak, "the block where cos(δ_ℓ, v_ℓ) at t peaks: steered as well as the middle block"
    )
    curves_at: dict[int, dict] = {}
    for layer in dict.fromkeys((middle, peak)):
        directions = steering_directions(found, delta, layer, cfg.seed)
        nulls = None
        if s.null_directions:
            nulls = null_directions(found["differences"][layer], s.null_directions, cfg.seed + layer)
        print(
            f"[loclin] steering: curves at layer {layer} for {len(directions)} directions × {len(s.alphas)} α"
            + (f" and 2 × {s.null_directions} null directions near α = 0" if nulls else "")
            + f", {len(heldout)} held-out items",
            flush=True,
        )
        curves_at[layer] = steering_curves(model, heldout_batch, directions, layer, list(s.alphas), s.batch_size, nulls)
    metrics.update(slope_metrics(curves_at[middle], middle, "", s.bootstrap, cfg.seed))
    metrics.update(slope_metrics(curves_at[peak], peak, "at_peak.", s.bootstrap, cfg.seed))
    metrics[f"steer.cos_delta_caa.layer{middle}"] = metric(
        float(cos_delta[middle]), f"cos(δ, v) at the steered layer {middle}"
    )
    if s.bootstrap:
        metrics[f"steer.cos_delta_caa.layer{middle}"]["interval"] = layer_curves["cos_delta_caa_interval"][middle]
    if s.shuffled_draws:
        shuffled = shuffled_label_cosines(found["differences"], delta, s.shuffled_draws, cfg.seed + 3)
        magnitude = shuffled.abs()
        layer_curves["shuffled_mean"] = shuffled.mean(0).tolist()
        layer_curves["shuffled_p95"] = magnitude.quantile(0.95, dim=0).tolist()
        metrics["steer.shuffled_p95"] = metric(
            float(magnitude.quantile(0.95, dim=0).mean()),
            (
                f"shuffled-label null: 95th percentile of |cos(δ_ℓ, v_ℓ^π)| over {s.shuffled_draws} random sign flips "
                "of the items' contrasts, mean over layers"
            ),
        )
        metrics["steer.shuffled_max_p95"] = metric(
            float(magnitude.quantile(0.95, dim=0).max()),
            "shuffled-label null: the largest per-layer 95th percentile of |cos(δ_ℓ, v_ℓ^π)|",
        )
        peak_null = magnitude.max(dim=1).values  # one maximum over blocks per draw: the null of a peak
        layer_curves["shuffled_peak"] = peak_null.tolist()
        metrics["steer.shuffled_peak_p95"] = metric(
            float(peak_null.quantile(0.95)),
            (
                f"shuffled-label null of the peak: 95th percentile over {s.shuffled_draws} sign flips of "
                "max over blocks of |cos(δ_ℓ, v_ℓ^π)|, the null that steer.cos_delta_caa.max is held against"
            ),
        )
    summary = {
        "experiment": cfg.experiment,
        "protocol": "steer",
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "model": s.model,
        "stepped": s.stepped,
        "source": s.source,
        "special_prefix": special_prefix(tokenizer, s.special_tokens),
        "items": {"train": len(train), "heldout": len(heldout)},
        "metrics": metrics,
        "curves": {
            "steer.layers": layer_curves,
            "steer.flatness": flatness["answer"],
            "steer.flatness_prompt_end": flatness["prompt_end"],
            "steer.curves": curves_at[middle],
            "steer.curves_at_peak": curves_at[peak],
        },
        "wall_seconds_this_process": time.time() - started,
    }
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary
