"""The model sections of the configuration, as the modules take them whole (torch-free, so the
config schema in loclin/schema.py is built from them and validation stays light)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DecoderConfig:
    """The synthetic decoder's shape (lightning_modules.transformer.TinyDecoder); ``model:`` in a config."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0


@dataclass
class LoraAdapterConfig:
    """A LoRA adapter on a causal LM (peft); ``lm.lora:`` in a config."""

    rank: int = 8  # r
    alpha: float = 16.0  # ΔW = (alpha / r) B A
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  # GPT-2: [c_attn]
    fan_in_fan_out: bool | None = None  # null: true when the targets are GPT-2 Conv1D layers
