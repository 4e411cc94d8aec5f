"""World size 2 (DDP, gloo on CPU) against one process at the same global batch.

Every kind of run that trains (synthetic, recovery, random search, LoRA with activation
shifts) is run on both. One process with ``trainer.grad_shards=2`` reduces the gradient over the same two row shards
the two ranks hold, in the same order, so with equal thread counts (``trainer.cpu_threads=1``)
training is the same bit for bit and every summary number is equal, in float32. With
``geometry.shard_windows`` each rank keeps half the coordinates and the geometry all-reduces
partial sums, which changes only their summation order: ≤ 1e-5 relative. A sharded run killed
mid-run resumes (on two ranks) to the same numbers.
The sharded windows, a killed sharded run and a fork on two ranks are in test_ddp_sharded.py.
"""

import pytest
from ddp_runs import DDP, run, values

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

SHORT_RECOVERY = "phases=[{name: train, steps: 50}, {name: degrade, steps: 20}, {name: recover, steps: 30}]"


@pytest.mark.parametrize("config", ["tiny_synthetic.yaml", "tiny_recovery.yaml", "tiny_random_search.yaml"])
def test_two_ranks_give_the_single_process_summary_bit_for_bit(config, tmp_path):
    single = run(config, tmp_path / "single", "trainer.grad_shards=2")
    parallel = run(config, tmp_path / "ddp", *DDP)
    assert values(parallel) == values(single)


def test_lora_on_two_ranks_gives_the_single_process_summary_bit_for_bit(tiny_gpt2, contrast_assets, tmp_path):
    """A peft adapter (frozen base, padded batches), the recovery protocol and activation shifts."""
    lora = [
        f"lm.model={tiny_gpt2}",
        "activation_shift.enabled=true",
        f"activation_shift.data={contrast_assets}",
        "activation_shift.stride=10",
        "activation_shift.n_items=8",
    ]
    lora += [SHORT_RECOVERY, "geometry.drift_lags=[10,20]"]  # every phase, in half the steps of tiny_lora
    single = run("tiny_lora.yaml", tmp_path / "single", *lora, "trainer.grad_shards=2")
    parallel = run("tiny_lora.yaml", tmp_path / "ddp", *lora, *DDP)
    assert any(name.startswith("activation.") for name in single)
    assert values(parallel) == values(single)
