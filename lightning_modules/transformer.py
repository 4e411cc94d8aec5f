"""A small pre-LN decoder-only transformer (nanoGPT-style) for the synthetic tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class TinyDecoder(nn.Module):
    def __init__(
        self, vocab_size: int, context: int, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """A partition of all parameters: embed, block{i}.attn, block{i}.mlp, head.

        Each block's layer norms go with the sub-layer they feed.
        """
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"embed": [], "head": []}
        for i in range(len(self.blocks)):
            groups[f"block{i}.attn"] = []
            groups[f"block{i}.mlp"] = []
        for name, param in self.named_parameters():
            if name.startswith(("token_embedding", "position_embedding")):
                group = "embed"
            elif name.startswith(("ln_final", "unembed")):
                group = "head"
            else:
                _, index, sub, *_ = name.split(".")
                group = f"block{index}.{'attn' if sub in ('ln_attn', 'attn') else 'mlp'}"
            groups[group].append((name, param))
        order = ["embed"] + [f"block{i}.{s}" for i in range(len(self.blocks)) for s in ("attn", "mlp")] + ["head"]
        return {g: groups[g] for g in order}
