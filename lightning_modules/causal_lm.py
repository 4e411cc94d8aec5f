"""A LoRA adapter (peft) on a pretrained causal LM, trained on answer tokens of text tasks.

One code path loads any causal LM through ``AutoModelForCausalLM`` / ``AutoTokenizer``, from a
source already resolved by the caller (``loclin.model_source``: an ``asset:NAME`` of the loclin
asset cache, a local directory or a Hugging Face hub id, and whether to stay offline). The
base model is frozen and runs without dropout (the measured loss must be a deterministic
function of the adapter); only the LoRA matrices train. They form two parameter groups,
``lora_A`` and ``lora_B`` (every adapted layer, in model order): θ = (A ‖ B) is the raw space the
callbacks measure. The effective weight change of layer ℓ is ΔW_ℓ = (α/r) B_ℓ A_ℓ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import torch
from loclin.datamodules.text_tasks import TEXT_TASK_NAMES
from loclin.lightning_modules.answer_tokens import AnswerTokenModule
from loclin.lightning_modules.optim import OptimizerSpec
from loclin.lightning_modules.sections import LoraAdapterConfig
from torch import nn

Source = tuple[str, bool]  # (what from_pretrained gets, whether to stay offline)


class AdapterError(ValueError):
    """A LoRA adapter that does not fit the model (a user's mistake)."""


def load_causal_lm(model: Source, tokenizer: Source | None = None):
    """(model in float32 with every dropout off, tokenizer) through one ``from_pretrained`` path;
    the tokenizer comes from the model's source unless given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (source, offline), (tokenizer_source, tokenizer_offline) = model, tokenizer or model
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=offline)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, local_files_only=tokenizer_offline)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model, tokenizer


def uses_conv1d(model: nn.Module, target_modules: Sequence[str]) -> bool:
    """True when the targeted layers are GPT-2 style Conv1D (weight stored in×out)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for n, m in model.named_modules() if n.split(".")[-1] in target_modules)


def add_lora_adapter(
    base: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    target_modules: Sequence[str],
    fan_in_fan_out: bool | None = None,
) -> nn.Module:
    """``base`` wrapped by peft with a LoRA adapter (A Kaiming, B = 0); only A and B train."""
    from peft import LoraConfig, get_peft_model

    targets = list(target_modules)
    present = {n.split(".")[-1] for n, _ in base.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise AdapterError(
            f"lora.target_modules {missing} are not modules of {type(base).__name__}; it has e.g. "
            f"{sorted(present)[:12]}"
        )
    if fan_in_fan_out is None:
        fan_in_fan_out = uses_conv1d(base, targets)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
    )
    try:
        return get_peft_model(base, config)
    except ValueError as error:  # peft's own refusal (a container module, a type it cannot adapt)
        raise AdapterError(f"lora.target_modules {targets}: {str(error).splitlines()[0]}") from None


class CausalLMLoRAModule(AnswerTokenModule):
    def __init__(
        self,
        model_source: Source,
        task_names: list[str],
        tokenizer_source: Source | None = None,
        adapter: LoraAdapterConfig | None = None,
        optim: OptimizerSpec | None = None,
    ):
        """``adapter``: the LoRA adapter (``lm.lora:`` of a config); ``optim``: the optimizer when no
        phase sets one."""
        super().__init__(task_names, TEXT_TASK_NAMES, optim)
        adapter = adapter or LoraAdapterConfig()
        self.save_hyperparameters({"model": str(model_source[0]), "lora": asdict(adapter)})
        base, self.tokenizer = load_causal_lm(model_source, tokenizer_source)
        self.model = add_lora_adapter(
            base.train(), adapter.rank, adapter.alpha, adapter.dropout, adapter.target_modules, adapter.fan_in_fan_out
        )  # train mode is harmless: dropout is off
        self.strict_loading = False  # checkpoints hold the adapter only; the base model is reloaded

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=tokens, attention_mask=attention_mask, use_cache=False).logits

    def language_model(self) -> nn.Module:
        """The adapted causal LM, whose decoder blocks the activation measurements hook (with
        ``parameter_groups()`` and ``loss(batch)``, what a callback may see of this module)."""
        return self.model

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        trainable = self.trainable_parameters()
        return {group: [(n, p) for n, p in trainable if f".{group}." in n] for group in ("lora_A", "lora_B")}

    def lora_layers(self) -> list[tuple[str, str, float]]:
        """(name of A, name of B, scaling α/r) of every adapted layer: ΔW = scaling · B A."""
        names = [n for n, _ in self.trainable_parameters()]
        layers = []
        for a_name in (n for n in names if ".lora_A." in n):
            b_name = a_name.replace(".lora_A.", ".lora_B.")
            layer = self.get_submodule(a_name.split(".lora_A.")[0])
            adapter = a_name.split(".lora_A.")[1].split(".")[0]
            layers.append((a_name, b_name, float(layer.scaling[adapter])))
        return layers

    def reset_group(self, group: str, generator: torch.Generator) -> None:
        """D4 as peft initialises LoRA: A Kaiming-uniform, B zero."""
        with torch.no_grad():
            for _, param in self.parameter_groups()[group]:
                if group == "lora_B":
                    param.zero_()
                else:
                    nn.init.kaiming_uniform_(param, a=math.sqrt(5), generator=generator)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {n for n, _ in self.trainable_parameters()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Adapter-only state dicts: every trainable tensor must be there, the base may not."""
        missing = [n for n, _ in self.trainable_parameters() if n not in state_dict]
        if missing:
            raise KeyError(f"checkpoint lacks adapter tensors, e.g. {missing[:2]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)
