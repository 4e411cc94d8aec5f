#!/usr/bin/env bash
# The C4 regime map on the synthetic model: how much of the recovery displacement the first 8
# updates capture (P8), against the nulls that could fake it (8 updates at random positions, the
# last 8, 8 consecutive updates at >= 20 offsets, a replica recovery in another data order, S0 the
# optimizer's step-0 updates at θ_0) and the function-space ablations (the recovery re-run inside
# θ_0 + span(P8), and with span(P8) projected out), per recover optimizer and learning rate, the
# recover warm-up, and the degradation's type and strength (forked from θ*), from one θ_0 per
# parent seed: 5 parents, each made at one CPU thread (recorded in every point's made_by).
# Seeds 0-2 choose the best cell, 3-4 confirm it. Resumable: run it again. About 75 minutes on 2 CPU cores.
#   bash docs/maps/c4_synthetic.sh [OUT=runs/maps/c4_synthetic] [WORKERS=2]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c4_synthetic}
WORKERS=${2:-2}
PARENTS=()
SEEDS=0,1,2,3,4
for seed in ${SEEDS//,/ }; do  # one output root per seed: the parent of seed s is always version_0 there
  parent="$OUT/parents/seed_$seed/recovery_synthetic/version_0"
  if [ ! -f "$parent/summary.json" ]; then
    if [ -d "$parent" ]; then python train.py --resume "$parent"
    else python train.py --config conf/recovery_synthetic.yaml "output_root=$OUT/parents/seed_$seed" "seed=$seed" \
      trainer.progress_bar=false trainer.cpu_threads=1 recovery.constrained_m=0; fi
  fi
  PARENTS+=("$parent")
done
# every cell: 200 recovery steps on `reverse`, constant rate, no warm-up, the ablations and the replica
# (a map reads numbers: trainer.figures=false skips TensorBoard's figures, ~4% of a cell, and changes none)
FIXED=(phases.2.steps=200 phases.2.optim.warmup_steps=0 recovery.constrained_m=8 recovery.outside_m=8 trainer.keep_checkpoints=false
  recovery.replica=true trainer.cpu_threads=1 trainer.figures=false)
sweep() {  # name, then the grid
  local name=$1; shift
  python -m loclin.sweep --fork "${PARENTS[@]}" --after degrade --seeds "$SEEDS" --workers "$WORKERS" --out "$OUT/$name" "$@" "${FIXED[@]}" \
    || echo "[map] $name: some points failed (diverged?): see $OUT/$name/logs/; the map names them"
}
sweep sgd phases.2.optim.name=sgd phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.0125,0.05,0.2,0.8]"
sweep sgd_momentum phases.2.optim.name=sgd phases.2.optim.momentum=0.9 phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.005,0.02,0.08]"
sweep adam phases.2.optim.name=adam phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.0003,0.001,0.003]"
sweep adamw phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 --grid "phases.2.lr=[0.0003,0.001,0.003]"
# the warm-up of the recover rate: recovery_synthetic's own recover phase warms up over 100 steps
sweep adamw_warmup phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 phases.2.lr=0.001 --grid "phases.2.optim.warmup_steps=[0,20,100]"
# the degradation's type and strength, forked from θ* (after `train`), recovered by AdamW at 1e-3 (no warm-up)
degradation() {  # name, then the grid and overrides
  local name=$1; shift
  python -m loclin.sweep --fork "${PARENTS[@]}" --after train --seeds "$SEEDS" --workers "$WORKERS" --out "$OUT/$name" \
    phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 phases.2.lr=0.001 "$@" "${FIXED[@]}" \
    || echo "[map] $name: some points failed (diverged?): see $OUT/$name/logs/; the map names them"
}
degradation d1_strength --grid "phases.1.lr=[0.001,0.01]"  # D1 at a third and 3× the shipped rate (3e-3)
degradation d1_length --grid "phases.1.steps=[100,2000]"  # D1 for a fifth and 4× the shipped 500 steps
degradation d3_noise phases.1.steps=0 recovery.degradation=noise --grid "recovery.noise_scale=[0.05,0.3]"
degradation d2_d4 phases.1.steps=0 --grid "recovery.degradation=[negation,reset]"
python analyze.py "$OUT" --out "$OUT/report"  # the map: table, verdict, figures, cells.json
