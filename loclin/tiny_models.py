"""Tiny causal LMs built from a config (seeded random weights) and saved with save_pretrained,
so the LoRA stack runs end to end offline through the same from_pretrained path as real models."""

from __future__ import annotations

from pathlib import Path


def save_tiny_gpt2(
    out: Path, tokenizer_dir: Path, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, seed: int = 0
) -> Path:
    """A GPT-2-architecture model (Conv1D c_attn, the real 50,257-token vocabulary) in ``out``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
