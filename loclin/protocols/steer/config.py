"""The steering protocol's section (``steer:``) and its checks (docs/science.md 9)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from loclin.datamodules.sections import CONTRAST_SOURCES
from loclin.lightning_modules.sections import LoraAdapterConfig
from loclin.schema import check_asset, protocol_section, require


@protocol_section("steer")
@dataclass
class SteerConfig:
    model: str = "asset:smollm2-135m-instruct"  # asset:NAME, a local directory, or a hub id
    source: str = "coqa"  # coqa (BoolQ-style yes/no) | statements (true/false) | sycophancy (CAA A/B) | bigbench
    data: str = "asset:bigbench-coqa-yes-no"  # folder (or asset) holding the source's file
    template: str = "{passage}\n{history}Question: {question}?\nAnswer:"  # statements: {statement}
    yes_answer: str = " Yes"  # answer strings (leading space: they follow the template's last token)
    no_answer: str = " No"
    n_train: int = 48  # items for v, δ, s
    n_heldout: int = 32  # other items for the steering curves
    max_tokens: int = 256  # items whose answer sits later are skipped (CPU time)
    batch_size: int = 8
    etas: list[float] = field(
        default_factory=lambda: [1e-5, 1e-4, 1e-3]
    )  # SGD step sizes (flatness); the middle one is the headline
    adam_eta: float = 1e-5  # Adam's first step (≈ η sign g)
    steer_layer: int | None = None  # null: the middle block
    special_tokens: bool = True  # the tokenizer's own prefix (a BOS for Gemma/Llama-family); false: none
    bootstrap: int = 1000  # resamples of the items for 95% intervals of cosines and slopes; 0 = none
    shuffled_draws: int = 100  # shuffled-label CAA null: random sign flips of the contrasts; 0 = none
    null_directions: int = 20  # random and as many shuffled-label directions whose slopes make the null band; 0 = none
    stepped: str = "all"  # parameters the one step moves: all (every weight) | lora (a fresh adapter, steer.lora)
    lora: LoraAdapterConfig = field(default_factory=LoraAdapterConfig)
    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    random_samples: int = 1000


SLOPE_RADIUS = 0.25  # steering slopes at α = 0 are fitted over |α| <= this (units of the residual norm)


def validate_steer(c: DictConfig) -> None:
    s = c.steer
    require(
        s.source in CONTRAST_SOURCES,
        f"steer.source='{s.source}' must be one of {list(CONTRAST_SOURCES)}",
    )
    require(
        s.n_train >= 1 and s.n_heldout >= 1 and s.batch_size >= 1,
        "steer.n_train, steer.n_heldout and steer.batch_size must be >= 1",
    )
    require(s.stepped in ("all", "lora"), f"steer.stepped='{s.stepped}' must be all or lora")
    require(s.lora.rank >= 1 and len(s.lora.target_modules) > 0, "steer.lora needs rank >= 1 and target_modules")
    require(
        len(s.etas) > 0 and all(e > 0 for e in s.etas) and s.adam_eta > 0,
        f"steer.etas={list(s.etas)} and steer.adam_eta must be > 0",
    )
    require(
        any(abs(a) <= SLOPE_RADIUS and a != 0 for a in s.alphas),
        f"steer.alphas={list(s.alphas)} needs a nonzero α within {SLOPE_RADIUS} of 0 for the slope",
    )
    require(
        s.bootstrap == 0 or s.bootstrap >= 100,
        f"steer.bootstrap={s.bootstrap} must be 0 (no intervals) or >= 100 resamples",
    )
    require(
        s.shuffled_draws == 0 or s.shuffled_draws >= 20,
        f"steer.shuffled_draws={s.shuffled_draws} must be 0 (no null) or >= 20 draws",
    )
    require(
        s.null_directions == 0 or s.null_directions >= 20,
        f"steer.null_directions={s.null_directions} must be 0 (no null band) or >= 20 of each kind",
    )
    for key in ("model", "data"):
        check_asset(s[key], f"steer.{key}")
