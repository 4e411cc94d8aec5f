#!/usr/bin/env bash
# The C3 map: drift of the gradient and update bases at disjoint lags from W (W, 1.25W, 1.5W, 2W,
# then 100-400), read against the noise ceiling, on several seeds, each run followed by a phase at
# lr 0 on fresh batches (θ frozen: a gradient stream that cannot drift, whose ratio must be ≈ 1).
# Resumable: a seed with a summary is skipped, a killed one resumed.
#   bash docs/maps/c3_drift.sh [OUT=runs/maps/c3_drift] [SYSTEM=synthetic|lora] [SEEDS=0,1,2,3,4] [OVERRIDE ...]
# Overrides after the seeds go to every run (e.g. trainer.cpu_threads=1 to run two seeds side by side).
# The frozen phase is long enough for the largest lag: steps_needed(100, W = 16) = 201 for lora.
# synthetic: about 8 min a seed at one thread; lora (SmolLM2 LoRA, seeds 0,1,2): about 75 min a seed
# at two threads (python -m loclin.assets fetch smollm2-135m-instruct brown-corpus).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c3_drift}
SYSTEM=${2:-synthetic}
if [ "$SYSTEM" = lora ]; then
  SEEDS=${3:-0,1,2}
  CONFIG=conf/lora_smollm2.yaml
  PHASES='phases=[{name: train, steps: 300}, {name: degrade, steps: 100, lr: 5.0e-3}, {name: recover, steps: 200}, {name: frozen, steps: 210, lr: 0, starts_from: recover}]'
else
  SEEDS=${3:-0,1,2,3,4}
  CONFIG=conf/synthetic.yaml
  PHASES='phases=[{name: train, steps: 4000}, {name: frozen, steps: 600, lr: 0}]'
fi
for seed in ${SEEDS//,/ }; do
  name="${SYSTEM}_seed${seed}"
  if compgen -G "$OUT/$name/*/version_*/summary.json" > /dev/null; then echo "[c3] $name: done"; continue; fi
  killed=$(compgen -G "$OUT/$name/*/version_*" | tail -1 || true)
  if [ -n "$killed" ]; then echo "[c3] $name: resumed"; python train.py --resume "$killed"; continue; fi
  echo "[c3] $name"
  python train.py --config "$CONFIG" "output_root=$OUT/$name" "seed=$seed" trainer.progress_bar=false trainer.figures=false \
    "$PHASES" "${@:4}"
done
python analyze.py "$OUT" --out "$OUT/report"
