"""The answer-token cross-entropy at a language model's vocabulary size, against scipy's
log-sum-exp in float64, and under vmap (the random-search probe moves parameters in a batch)."""

import numpy as np
import torch
from loclin.datamodules.phased import IGNORE_INDEX
from loclin.lightning_modules.answer_tokens import AnswerTokenModule, answer_positions
from scipy.special import logsumexp

VOCAB = 50_000


def logits_and_target(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(3, 6, VOCAB, generator=generator)
    target = torch.full((3, 6), IGNORE_INDEX)
    target[0, 4:] = torch.tensor([17, 49_999])
    target[1, 5] = 3
    target[2, 1:4] = torch.tensor([0, 25_000, 8])
    return logits, target


def scipy_losses(logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    rows, cols = np.nonzero(target.numpy() != IGNORE_INDEX)
    z = logits.double().numpy()[rows, cols]
    return logsumexp(z, axis=1) - z[np.arange(len(rows)), target.numpy()[rows, cols]]


def test_the_answer_rows_cross_entropy_is_scipys_float64_log_sum_exp():
    logits, target = logits_and_target()
    expected = scipy_losses(logits, target)
    module = AnswerTokenModule(["t"], ["t"])
    module.logits = lambda batch: logits
    _, per_token = module.per_token_loss({"target": target})
    answer = target != IGNORE_INDEX
    np.testing.assert_allclose(per_token[answer].double().numpy(), expected, rtol=2e-6, atol=2e-6)
    assert torch.equal(per_token[~answer], torch.zeros(int((~answer).sum())))
    mean = float(AnswerTokenModule.answer_loss(logits, target))
    assert abs(mean - expected.mean()) < 2e-6 * expected.mean()
    assert [t.tolist() for t in answer_positions(target)] == [[0, 0, 1, 2, 2, 2], [4, 5, 5, 1, 2, 3]]


def test_the_loss_under_vmap_is_the_loss_of_each_logits():
    logits, target = logits_and_target()
    stacked = torch.stack([logits, logits.flip(-1), 2 * logits])
    batched = torch.vmap(AnswerTokenModule.answer_loss, in_dims=(0, None))(stacked, target)
    each = torch.stack([AnswerTokenModule.answer_loss(one, target) for one in stacked])
    torch.testing.assert_close(batched, each, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batched[2].item(), scipy_losses(2 * logits, target).mean(), rtol=2e-6)
