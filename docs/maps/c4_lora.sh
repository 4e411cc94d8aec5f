#!/usr/bin/env bash
# The C4 regime map on SmolLM2-135M-Instruct with a LoRA adapter (conf/lora_smollm2.yaml): P8
# capture of the recovery displacement against 8 random-position and the last 8 updates, per
# recover optimizer and learning rate, LoRA rank, and degradation type and strength. Recoveries
# are forked from one θ_0 (degradations from one θ*) per parent seed. Resumable: run it again.
#   bash docs/maps/c4_lora.sh [OUT=runs/maps/c4_lora] [WORKERS=1] [SECTIONS=adamw,adam,sgd,sgd_momentum,degradation,rank]
# Cost: a SmolLM2 step is ~5 s on 2 CPU cores (not 0.8 s), so a 100-step cell is ~10 min here and
# the whole map (~20 cells) is a GPU job: SEEDS=0,1,2 STEPS=200 bash docs/maps/c4_lora.sh OUT 4
# Run a whole map at one thread count (e.g. OMP_NUM_THREADS=1): on the CPU a run's numbers depend on
# it (two seed-0 parents made in two sessions, the second at 2 threads, reached θ* accuracy 0.784
# and 0.741), so parents made at two thread counts are two parents, not one.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c4_lora}
WORKERS=${2:-1}
SECTIONS=${3:-adamw,adam,sgd,sgd_momentum,degradation,rank}
STEPS=${STEPS:-100}
SEEDS=${SEEDS:-0,1}
CAPTURE_AT="[10,25,50,$STEPS]"
# every cell: STEPS recovery steps on `arith`, constant rate, no warm-up, no constrained re-run
FIXED=(phases.2.steps=$STEPS phases.2.optim.warmup_steps=0 recovery.constrained_m=0 "recovery.capture_at_steps=$CAPTURE_AT")
PARENTS=()
for seed in ${SEEDS//,/ }; do
  parent="$OUT/parents/lora_smollm2/version_$seed"
  if [ ! -f "$parent/summary.json" ]; then
    if [ -d "$parent" ]; then python train.py --resume "$parent"
    else python train.py --config conf/lora_smollm2.yaml "output_root=$OUT/parents" "seed=$seed" trainer.progress_bar=false "${FIXED[@]}"; fi
  fi
  PARENTS+=("$parent")
done
sweep() {  # name, the phase to fork after, the parents' seeds, then the grid and overrides
  local name=$1 after=$2 seeds=$3; shift 3
  local parents=("${PARENTS[@]:0:$(tr ',' '\n' <<< "$seeds" | wc -l)}")
  python -m loclin.sweep --fork "${parents[@]}" --after "$after" --seeds "$seeds" --workers "$WORKERS" --out "$OUT/$name" "$@" "${FIXED[@]}" \
    || echo "[map] $name: some points failed (diverged?): see $OUT/$name/logs/; the map names them"
}
FIRST=${SEEDS%%,*}
# the recover optimizer and its rate (AdamW on every seed: the verdict cell)
[[ $SECTIONS == *adamw* ]] && sweep adamw degrade "$SEEDS" phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 --grid "phases.2.lr=[0.0003,0.001,0.003]"
[[ $SECTIONS == *adam,* || $SECTIONS == *adam ]] && sweep adam degrade "$FIRST" phases.2.optim.name=adam phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.0003,0.001,0.003]"
[[ $SECTIONS == *sgd,* || $SECTIONS == *sgd ]] && sweep sgd degrade "$FIRST" phases.2.optim.name=sgd phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.4,0.1,1.6]"
[[ $SECTIONS == *sgd_momentum* ]] && sweep sgd_momentum degrade "$FIRST" phases.2.optim.name=sgd phases.2.optim.momentum=0.9 phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.01,0.04,0.16]"
if [[ $SECTIONS == *degradation* ]]; then  # the degradation's strength and type, forked from θ*, default recovery
sweep d1_strength train "$FIRST" --grid "phases.1.lr=[0.001,0.02]"
sweep d3_noise train "$FIRST" phases.1.steps=0 recovery.degradation=noise --grid "recovery.noise_scale=[0.05,0.3]"
fi
if [[ $SECTIONS == *rank* ]]; then  # the LoRA rank at the default recovery: 4 and 16 are new models (full runs);
# 8 is the parent's own model, its recovery re-run by a fork (bit-equal to the parent's): rank+parent joins rank
python -m loclin.sweep --config conf/lora_smollm2.yaml --seeds "$FIRST" --workers "$WORKERS" --out "$OUT/rank" --grid "lm.lora.rank=[4,16]" "${FIXED[@]}" \
  || echo "[map] rank: some points failed: see $OUT/rank/logs/"
sweep rank+parent degrade "$FIRST" --grid "lm.lora.rank=[8]"
fi
python analyze.py "$OUT" --out "$OUT/report"
