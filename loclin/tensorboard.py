"""The custom-scalars layout: one "drift" panel with every lag's curve together."""

from __future__ import annotations

from collections.abc import Sequence


def drift_layout(
    drift_sources: Sequence[str], sources: Sequence[str], tasks: Sequence[str], activation_shift: bool = False
) -> dict:
    """Layout for SummaryWriter.add_custom_scalars: {category: {chart: [kind, [tag regexes]]}}."""
    layout: dict[str, dict[str, list]] = {"drift": {}, "geometry": {}, "tasks": {}}
    for source in drift_sources:
        layout["drift"][f"{source}: overlap, all lags"] = ["Multiline", [rf"drift/{source}/overlap_lag\d+"]]
        layout["drift"][f"{source}: stale-basis capture, all lags"] = [
            "Multiline",
            [rf"drift/{source}/stale_capture_lag\d+"],
        ]
        layout["drift"][f"{source}: noise ceiling (running mean ± std)"] = [
            "Margin",
            [
                f"drift/{source}/noise_ceiling_mean",
                f"drift/{source}/noise_ceiling_lower",
                f"drift/{source}/noise_ceiling_upper",
            ],
        ]
        layout["drift"][f"{source}: disjoint half-window overlap and the ceiling"] = [
            "Multiline",
            [rf"drift/{source}/half_overlap_lag\d+", rf"drift/{source}/noise_ceiling$"],
        ]
        layout["drift"][f"{source}: overlap ÷ noise ceiling (the honest drift)"] = [
            "Multiline",
            [rf"drift/{source}/overlap_ratio_lag\d+"],
        ]
    for source in sources:
        layout["geometry"][f"{source}: top-k energy per group"] = ["Multiline", [rf"geometry/{source}/energy_topk.*"]]
        layout["geometry"][f"{source}: held-out capture"] = ["Multiline", [rf"geometry/{source}/heldout_capture_h\d+"]]
    layout["tasks"]["held-out accuracy"] = ["Multiline", [rf"val/({'|'.join(tasks)})/acc"]]
    layout["tasks"]["per-task held-out gradient capture"] = ["Multiline", [r"pertask/[a-z]+/heldout_capture"]]
    if activation_shift:
        layout["activation"] = {
            "cos(activation shift, CAA) per block": ["Multiline", [r"activation/cos_shift_caa/block\d+"]],
            "cos with CAA: mean over blocks, last stride and since start": [
                "Multiline",
                [r"activation/cos_(total_)?shift_caa_mean"],
            ],
        }
    return layout
