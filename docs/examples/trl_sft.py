"""loclin's geometry on a TRL ``SFTTrainer`` run, unchanged: the same callback as for a Hugging
Face ``Trainer`` (``loclin.hf.GeometryTrainerCallback``), on a LoRA adapter (peft).

    python docs/examples/trl_sft.py [MODEL] [OUTPUT_DIR]

MODEL defaults to loclin's offline tiny GPT-2 asset (``python -m loclin.assets fetch tiny-gpt2``);
any causal LM path or hub id works. Needs ``pip install trl``. Writes OUTPUT_DIR/summary.json (read
it with ``loclin-analyze OUTPUT_DIR``) and TensorBoard events in OUTPUT_DIR/loclin.
"""

from __future__ import annotations

import sys
from pathlib import Path

from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

from loclin.hf import GeometryTrainerCallback

SENTENCES = [
    "The river runs past the mill and into the sea.",
    "Seven plus five is twelve, and twelve minus five is seven.",
    "A window of gradients holds the recent history of training.",
    "The quick brown fox jumps over the lazy dog.",
]


def main(model: str | None = None, output_dir: str = "runs/trl_sft", steps: int = 40, callbacks=(), **settings) -> Path:
    """Fine-tunes ``model`` for ``steps`` steps; ``callbacks`` and SFTConfig ``settings`` are added."""
    if model is None:
        from loclin.assets import asset_path

        model = str(asset_path("tiny-gpt2"))
    data = Dataset.from_dict({"text": SENTENCES * 64})
    args = SFTConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        **settings,
    )
    geometry = GeometryTrainerCallback(
        window=8, k=2, basis_stride=2, heldout_lags=[1, 2], drift_stride=4, drift_lags=[4, 8, 16]
    )
    adapter = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM")
    callbacks = [geometry, *callbacks]
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, peft_config=adapter, callbacks=callbacks)
    trainer.train()
    return geometry.summary_path


if __name__ == "__main__":
    print(main(*(arg or None for arg in sys.argv[1:2]), *sys.argv[2:3]))
