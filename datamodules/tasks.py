"""Algorithmic sequence tasks over one shared vocabulary (numpy only, no torch).

Every example is laid out as ``[TASK] x_1 … x_n [SEP] y_1 … y_m [PAD …]`` and the loss is
taken on the answer tokens y only. Values are tokens 0…V−1 (V = ``modulus``); then come SEP,
PAD and one token per task.

Held-out split. Each task's inputs are encoded as one integer key. If the input space is small
(≤ ``ENUMERATE_LIMIT`` keys; modular arithmetic, majority) a seeded fraction of the whole space is
held out and never trained on, so held-out accuracy measures generalisation to unseen inputs.
If it is large (copy, reverse, sort) a seeded sample is held out and training draws reject any
input that collides with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENUMERATE_LIMIT = 100_000


@dataclass(frozen=True)
class Task:
    name: str
    description: str

    def input_shape(self, length: int) -> tuple[int, int]:
        """(number of input tokens, number of answer tokens)."""
        if self.name in ("add", "mul"):
            return 2, 1
        if self.name == "majority":
            return length, 1
        return length, length

    def input_base(self, modulus: int) -> int:
        return 2 if self.name == "majority" else modulus

    def answer_values(self, modulus: int) -> int:
        """How many values an answer token can take: 1/this is token-level chance."""
        return 2 if self.name == "majority" else modulus

    def answers(self, inputs: np.ndarray, modulus: int) -> np.ndarray:
        if self.name == "add":
            return ((inputs[:, 0] + inputs[:, 1]) % modulus)[:, None]
        if self.name == "mul":
            return ((inputs[:, 0] * inputs[:, 1]) % modulus)[:, None]
        if self.name == "copy":
            return inputs.copy()
        if self.name == "reverse":
            return inputs[:, ::-1].copy()
        if self.name == "sort":
            return np.sort(inputs, axis=1)
        if self.name == "majority":
            return (2 * inputs.sum(axis=1) > inputs.shape[1]).astype(inputs.dtype)[:, None]
        raise KeyError(self.name)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("add", "a + b mod p"),
        Task("mul", "a · b mod p"),
        Task("copy", "repeat the sequence"),
        Task("reverse", "the sequence backwards"),
        Task("sort", "the sequence in ascending order"),
        Task("majority", "1 if more than half of the bits are 1 (odd length)"),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


@dataclass(frozen=True)
class Vocabulary:
    modulus: int
    length: int

    @property
    def sep(self) -> int:
        return self.modulus

    @property
    def pad(self) -> int:
        return self.modulus + 1

    def task_token(self, task_index: int) -> int:
        return self.modulus + 2 + task_index

    @property
    def size(self) -> int:
        return self.modulus + 2 + len(TASK_NAMES)

    @property
    def seq_len(self) -> int:
        """Full example length: task token, inputs, SEP, answers."""
        return 1 + self.length + 1 + self.length


# training draws reject held-out inputs: past this share of the space held out, a draw would need
# more than 1 / (1 − 0.5) = 2 tries per input on average, and at a share of 1 it never ends
MAX_SAMPLED_HELDOUT_SHARE = 0.5


def heldout_problem(task: Task, modulus: int, length: int, heldout_size: int, heldout_fraction: float) -> str | None:
    """Why a task's held-out split leaves training too little, or None.

    Enumerated spaces (S ≤ ENUMERATE_LIMIT keys) hold out n = max(1, round(f·S)) keys and need
    n < S. Sampled spaces hold out ``heldout_size`` uniform draws, which cover an expected share
    1 − exp(−size/S) of the space; that share must stay ≤ MAX_SAMPLED_HELDOUT_SHARE.
    """
    n_in, _ = task.input_shape(length)
    space = task.input_base(modulus) ** n_in
    if space <= ENUMERATE_LIMIT:
        held = max(1, int(round(heldout_fraction * space)))
        if held >= space:
            return (
                f"holds out all {space} inputs of task '{task.name}' (data.heldout_fraction={heldout_fraction} of "
                f"{space}); lower the fraction or raise data.modulus/data.length"
            )
        return None
    share = 1 - np.exp(-heldout_size / space)
    if share > MAX_SAMPLED_HELDOUT_SHARE:
        return (
            f"data.heldout_size={heldout_size} would hold out {share:.0%} of task '{task.name}''s {space:,} inputs; "
            f"training draws reject held-out inputs, so at most {int(space * np.log(2)):,} "
            f"(half the space) is allowed"
        )
    return None


class TaskSampler:
    """Seeded generator of one task's examples, with a disjoint held-out split."""

    def __init__(self, task: Task, vocab: Vocabulary, heldout_size: int, heldout_fraction: float, seed: int):
        self.task = task
        self.vocab = vocab
        self.task_index = TASK_NAMES.index(task.name)
        self.n_in, self.n_out = task.input_shape(vocab.length)
        self.base = task.input_base(vocab.modulus)
        space = self.base**self.n_in
        rng = np.random.default_rng([seed, 7, self.task_index])
        if space <= ENUMERATE_LIMIT:
            n_heldout = max(1, int(round(heldout_fraction * space)))
            perm = rng.permutation(space)
            self.heldout_keys = np.sort(perm[:n_heldout])
            self.train_keys = np.sort(perm[n_heldout:])
            heldout_inputs = self._decode(self.heldout_keys)
        else:
            self.train_keys = None
            heldout_inputs = rng.integers(0, self.base, size=(heldout_size, self.n_in))
            self.heldout_keys = np.unique(self._encode(heldout_inputs))
        self.heldout_tokens = self.encode_examples(heldout_inputs)

    def _encode(self, inputs: np.ndarray) -> np.ndarray:
        weights = self.base ** np.arange(self.n_in, dtype=np.int64)
        return inputs.astype(np.int64) @ weights

    def _decode(self, keys: np.ndarray) -> np.ndarray:
        return (keys[:, None] // self.base ** np.arange(self.n_in, dtype=np.int64)) % self.base

    def sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n training inputs, never one of the held-out inputs."""
        if self.train_keys is not None:
            return self._decode(rng.choice(self.train_keys, size=n))
        inputs = rng.integers(0, self.base, size=(n, self.n_in))
        while True:
            clash = np.isin(self._encode(inputs), self.heldout_keys)
            if not clash.any():
                return inputs
            inputs[clash] = rng.integers(0, self.base, size=(int(clash.sum()), self.n_in))

    def encode_examples(self, inputs: np.ndarray) -> np.ndarray:
        """Token rows ``[TASK] inputs [SEP] answers [PAD…]`` of length ``vocab.seq_len``."""
        n = inputs.shape[0]
        answers = self.task.answers(inputs, self.vocab.modulus)
        tokens = np.full((n, self.vocab.seq_len), self.vocab.pad, dtype=np.int64)
        tokens[:, 0] = self.vocab.task_token(self.task_index)
        tokens[:, 1 : 1 + self.n_in] = inputs
        tokens[:, 1 + self.n_in] = self.vocab.sep
        tokens[:, 2 + self.n_in : 2 + self.n_in + self.n_out] = answers
        return tokens

    def answer_mask(self, n: int) -> np.ndarray:
        mask = np.zeros((n, self.vocab.seq_len), dtype=bool)
        mask[:, 2 + self.n_in : 2 + self.n_in + self.n_out] = True
        return mask

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, answer mask) of n fresh training examples."""
        return self.encode_examples(self.sample_inputs(rng, n)), self.answer_mask(n)
