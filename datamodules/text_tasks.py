"""Text tasks for causal language models: (prompt, answer) string pairs (numpy only, no torch).

The loss is taken on the answer's tokens only; every answer starts with a space so that it
tokenizes the same alone as after its prompt. Each task keeps a held-out split that training
never draws from:

- ``arith``: "37 + 48 =" → " 85", a, b ∈ 0…99; a seeded 20% of the 10,000 pairs is held out.
- ``compare``: "Is 37 greater than 48? Answer:" → " No"; a ≠ b ∈ 0…99, 20% of pairs held out.
- ``reverse``: "Reverse: house river apple ->" → " apple river house", three of the 400 most
  frequent Brown-corpus words; a seeded set of triples is held out and rejected in training.
- ``nextword``: a Brown-corpus sentence cut after k ≥ 4 words → " <word k+1>"; 10% of the
  sentences are held out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXT_TASK_NAMES = ("arith", "compare", "reverse", "nextword")
CORPUS_TASKS = ("reverse", "nextword")  # need the Brown corpus (asset ``brown-corpus``)
Example = tuple[str, str]


def split_keys(n_keys: int, heldout_fraction: float, seed: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded partition of 0…n_keys−1 into (train, held-out); held-out keys in random order,
    so that any prefix of them is a uniform sample."""
    order = np.random.default_rng([seed, 7, salt]).permutation(n_keys)
    n_heldout = max(1, round(heldout_fraction * n_keys))
    return np.sort(order[n_heldout:]), order[:n_heldout]


@dataclass
class TextTask:
    """One task: ``sample(rng, n)`` draws training examples, ``heldout`` is the fixed split."""

    name: str
    task_index: int
    train_keys: np.ndarray
    heldout_keys: np.ndarray
    heldout_size: int
    answer_values: int | None  # distinct one-token answers (1/this is chance); None: answers span tokens

    def example(self, key: int, rng: np.random.Generator | None) -> Example:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> list[Example]:
        return [self.example(int(key), rng) for key in rng.choice(self.train_keys, size=n)]

    @property
    def heldout(self) -> list[Example]:
        rng = np.random.default_rng([self.task_index, 11])
        keys = self.heldout_keys[: self.heldout_size]
        return [self.example(int(key), rng) for key in keys]


class Arithmetic(TextTask):
    def example(self, key: int, rng) -> Example:
        a, b = divmod(key, 100)
        return f"{a} + {b} =", f" {a + b}"


class Compare(TextTask):
    def example(self, key: int, rng) -> Example:
        a, b = divmod(key, 100)
        return f"Is {a} greater than {b}? Answer:", " Yes" if a > b else " No"


class Reverse(TextTask):
    words: list[str]

    def example(self, key: int, rng) -> Example:
        n = len(self.words)
        triple = [self.words[key // (n * n)], self.words[(key // n) % n], self.words[key % n]]
        return f"Reverse: {' '.join(triple)} ->", " " + " ".join(reversed(triple))

    def sample(self, rng: np.random.Generator, n: int) -> list[Example]:
        n_words, heldout = len(self.words), set(self.heldout_keys.tolist())
        keys: list[int] = []
        while len(keys) < n:
            key = int(rng.integers(0, n_words**3))
            if key not in heldout:
                keys.append(key)
        return [self.example(key, rng) for key in keys]


class NextWord(TextTask):
    sentences: list[list[str]]

    def example(self, key: int, rng) -> Example:
        words = self.sentences[key]
        cuts = [i for i in range(4, len(words)) if words[i].isalpha()]
        cut = cuts[int(rng.integers(0, len(cuts)))]  # the held-out split uses its own fixed rng
        return detokenize(words[:cut]), " " + words[cut]


def detokenize(words: Sequence[str]) -> str:
    """Brown's space-separated tokens as text: no space before , ; : . ? ! or '"""
    text = " ".join(words)
    for mark in (",", ";", ":", ".", "?", "!", "'s", "n't"):
        text = text.replace(f" {mark}", mark)
    return text


def read_corpus(path: Path, min_words: int = 8, max_words: int = 30) -> tuple[list[str], list[list[str]]]:
    """(the 400 most frequent lowercase words of 3–7 letters, sentences with a word after
    their fourth token)."""
    sentences, counts = [], Counter()
    for line in path.read_text().splitlines():
        words = line.split()
        counts.update(w for w in words if w.isalpha() and w.islower() and 3 <= len(w) <= 7)
        if min_words <= len(words) <= max_words and any(w.isalpha() for w in words[4:]):
            sentences.append(words)
    return [w for w, _ in counts.most_common(400)], sentences


def build_text_tasks(names: Sequence[str], corpus: Path | None, heldout_size: int, seed: int) -> dict[str, TextTask]:
    """The named tasks; ``corpus`` (brown.txt) is needed only by reverse and nextword."""
    words: list[str] = []
    sentences: list[list[str]] = []
    if any(name in CORPUS_TASKS for name in names):
        if corpus is None or not corpus.is_file():
            raise FileNotFoundError(
                f"tasks {[n for n in names if n in CORPUS_TASKS]} need the Brown corpus; '{corpus}' is not a file"
            )
        words, sentences = read_corpus(corpus)
    tasks: dict[str, TextTask] = {}
    for name in names:
        index = TEXT_TASK_NAMES.index(name)
        if name in ("arith", "compare"):
            keys = np.arange(10_000) if name == "arith" else np.array([k for k in range(10_000) if k // 100 != k % 100])
            train, heldout = split_keys(len(keys), 0.2, seed, index)
            cls, values = (Arithmetic, None) if name == "arith" else (Compare, 2)
            tasks[name] = cls(name, index, keys[train], keys[heldout], heldout_size, values)
        elif name == "reverse":
            heldout = np.random.default_rng([seed, 7, index]).choice(len(words) ** 3, size=heldout_size, replace=False)
            task = Reverse(name, index, np.empty(0, dtype=np.int64), heldout, heldout_size, None)
            task.words = words
            tasks[name] = task
        elif name == "nextword":
            train, heldout = split_keys(len(sentences), 0.1, seed, index)
            task = NextWord(name, index, train, heldout, heldout_size, None)
            task.sentences = sentences
            tasks[name] = task
        else:
            raise KeyError(f"unknown text task '{name}'; known: {list(TEXT_TASK_NAMES)}")
    return tasks
