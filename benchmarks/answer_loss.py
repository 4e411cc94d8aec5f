"""A training step's forward + loss + backward with the answer-token cross-entropy taken two ways,
in one process, on one batch of a config's model:

- ``full``: the log-softmax over the vocabulary at every position, then masked to the answer
  tokens (``F.cross_entropy(logits.transpose(1, 2), target, ignore_index=…)``, loclin before
  this benchmark);
- ``answer rows``: the cross-entropy of the answer positions' rows alone
  (``lightning_modules.answer_tokens.answer_positions``, what loclin does now).

    python benchmarks/answer_loss.py [--config conf/lora_smollm2.yaml] [--repeats 10] [--threads 1]

The two are timed alternately, so load on the machine falls on both; the ratio full ÷ answer rows
is the speed-up of a step's loss path. Their losses are compared with the loss of the same logits in
float64: the full-vocabulary path's strided log-softmax is the less accurate of the two in float32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from loclin.datamodules.phased import IGNORE_INDEX  # noqa: E402

from loclin.config import load_config  # noqa: E402
from loclin.protocols.train.build import build_module_and_data  # noqa: E402


def full_vocabulary_loss(module, batch) -> torch.Tensor:
    logits = module.logits(batch)
    losses = F.cross_entropy(logits.transpose(1, 2), batch["target"], ignore_index=IGNORE_INDEX, reduction="none")
    return losses.sum() / (batch["target"] != IGNORE_INDEX).sum()


def step(loss_of, module, batch) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    params = [p for _, p in module.trainable_parameters()]
    start = time.perf_counter()
    loss = loss_of(module, batch)
    grads = torch.autograd.grad(loss, params)
    return time.perf_counter() - start, loss.detach(), [g.reshape(-1) for g in grads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="conf/lora_smollm2.yaml")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [])
    module, datamodule = build_module_and_data(cfg)
    datamodule.setup("fit")
    task = list(cfg.data.tasks)[0]
    batch = datamodule.probe_batch(task, (1, 0), cfg.data.batch_size)
    variants = {"full": full_vocabulary_loss, "answer rows": lambda m, b: m.loss(b)}
    times = {name: [] for name in variants}
    results = {}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for name, loss_of in variants.items():
            seconds, loss, grads = step(loss_of, module, batch)
            results[name] = (loss, torch.cat(grads))
            if repeat:
                times[name].append(seconds)
    tokens = batch["target"].numel()
    answers = int((batch["target"] != IGNORE_INDEX).sum())
    vocab = module.logits(batch).shape[-1]
    print(
        f"{args.config}: batch {tuple(batch['target'].shape)}, {answers} answer tokens of {tokens}, vocabulary {vocab}"
    )
    for name, values in times.items():
        print(f"  {name:12s} median {statistics.median(values) * 1e3:8.1f} ms (forward + loss + backward)")
    ratio = statistics.median(times["full"]) / statistics.median(times["answer rows"])
    print(f"  full ÷ answer rows: {ratio:.2f}×")
    (loss_a, grad_a), (loss_b, grad_b) = results["full"], results["answer rows"]
    relative = float((grad_a - grad_b).norm() / grad_a.norm())
    with torch.no_grad():
        exact = float(module.answer_loss(module.logits(batch).double(), batch["target"]))
    print(f"  loss: full {float(loss_a):.7f}, answer rows {float(loss_b):.7f}, float64 logits {exact:.7f}")
    print(f"  gradients differ by {relative:.1e} relative")


if __name__ == "__main__":
    main()
