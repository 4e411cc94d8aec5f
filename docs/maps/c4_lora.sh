#!/usr/bin/env bash
# The C4 regime map on SmolLM2-135M-Instruct with a LoRA adapter (conf/lora_smollm2.yaml): P8
# capture of the recovery displacement against its nulls (random positions, last 8, offset blocks,
# a replica, S0) and the function-space ablations (re-runs inside θ_0 + span(P8) and with span(P8)
# projected out), per recover optimizer and learning rate, LoRA rank, and degradation type and
# strength. Recoveries are forked from one θ_0 (degradations from one θ*) per parent seed.
# Resumable: run it again; finished points are skipped.
#   bash docs/maps/c4_lora.sh [OUT=runs/maps/c4_lora] [WORKERS=1] [SECTIONS=verdict,adamw,adam,sgd,sgd_momentum,degradation,rank]
# The verdict cells (section `verdict`: AdamW 1e-3, the default; Adam 1e-3, the best Adam rate of the
# first map; SGD 0.4, the best SGD rate) run on every seed of SEEDS (default 0,1,2: seeds 0-2 choose,
# add 3,4 to confirm); the other sections on the first seed. T = 10, 25, 50 and STEPS.
# Cost: a SmolLM2 step is ~5 s on 2 CPU cores, a parent (300 + 100 + STEPS steps) ~40 min and a
# verdict point (the recovery, its two re-runs and the replica) ~25 min here: a GPU job,
#   SEEDS=0,1,2,3,4 STEPS=100 bash docs/maps/c4_lora.sh OUT 4
# Every run of a map is made at one thread count, THREADS (default 1; parents too, WORKERS at a time): a run's numbers
# depend on it (two seed-0 parents made in two sessions, the second at 2 threads, reached θ*
# accuracy 0.784 and 0.741). Each parent has its own output root, so seed s is always version_0 there.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c4_lora}
mkdir -p "$OUT/parents"
WORKERS=${2:-1}
SECTIONS=${3:-verdict,adamw,adam,sgd,sgd_momentum,degradation,rank}
STEPS=${STEPS:-100}
SEEDS=${SEEDS:-0,1,2}
THREADS=${THREADS:-1}
CAPTURE_AT="[10,25,50,$STEPS]"
# every cell: STEPS recovery steps on `arith`, constant rate, no warm-up, the re-runs and the replica
FIXED=(phases.2.steps=$STEPS phases.2.optim.warmup_steps=0 recovery.constrained_m=8 recovery.outside_m=8
  recovery.replica=true "recovery.capture_at_steps=$CAPTURE_AT" "trainer.cpu_threads=$THREADS" trainer.keep_checkpoints=false
  trainer.figures=false)  # a map reads numbers: no TensorBoard figures (changes none)
PARENTS=()
make_parent() {  # seed: make (or resume) that seed's parent
  local parent="$OUT/parents/seed_$1/lora_smollm2/version_0"
  [ -f "$parent/summary.json" ] && return 0
  if [ -d "$parent" ]; then python train.py --resume "$parent"
  else python train.py --config conf/lora_smollm2.yaml "output_root=$OUT/parents/seed_$1" "seed=$1" \
    trainer.progress_bar=false phases.2.steps=$STEPS recovery.constrained_m=0 "trainer.cpu_threads=$THREADS"; fi
}
running=0
for seed in ${SEEDS//,/ }; do  # WORKERS parents at a time
  make_parent "$seed" >> "$OUT/parents/seed_$seed.log" 2>&1 &
  running=$((running + 1))
  if [ "$running" -ge "$WORKERS" ]; then wait -n || true; running=$((running - 1)); fi
  PARENTS+=("$OUT/parents/seed_$seed/lora_smollm2/version_0")
done
wait || true
for parent in "${PARENTS[@]}"; do
  [ -f "$parent/summary.json" ] || { echo "[map] parent $parent did not finish: see its log under $OUT/parents/"; exit 1; }
done
sweep() {  # name, the phase to fork after, the parents' seeds, then the grid and overrides
  local name=$1 after=$2 seeds=$3; shift 3
  local parents=("${PARENTS[@]:0:$(tr ',' '\n' <<< "$seeds" | wc -l)}")
  python -m loclin.sweep --fork "${parents[@]}" --after "$after" --seeds "$seeds" --workers "$WORKERS" --out "$OUT/$name" "$@" "${FIXED[@]}" \
    || echo "[map] $name: some points failed (diverged?): see $OUT/$name/logs/; the map names them"
}
FIRST=${SEEDS%%,*}
# the verdict cells on every seed (one at a time: SECTIONS=verdict_adamw, verdict_adam, verdict_sgd): the default AdamW, and the best Adam and SGD rates of the first map;
# a sweep "NAME+verdict" joins NAME in the map, so each is one cell of its optimizer's row
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }  # a section named in SECTIONS
want verdict || want verdict_adamw && sweep adamw+verdict degrade "$SEEDS" phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 --grid "phases.2.lr=[0.001]"
want verdict || want verdict_adam && sweep adam+verdict degrade "$SEEDS" phases.2.optim.name=adam phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.001]"
want verdict || want verdict_sgd && sweep sgd+verdict degrade "$SEEDS" phases.2.optim.name=sgd phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.4]"
# the other rates of each optimizer, on the first seed
want adamw && sweep adamw degrade "$FIRST" phases.2.optim.name=adamw phases.2.optim.weight_decay=0.1 --grid "phases.2.lr=[0.0003,0.003]"
want adam && sweep adam degrade "$FIRST" phases.2.optim.name=adam phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.0003,0.003]"
want sgd && sweep sgd degrade "$FIRST" phases.2.optim.name=sgd phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.1,1.6]"
want sgd_momentum && sweep sgd_momentum degrade "$FIRST" phases.2.optim.name=sgd phases.2.optim.momentum=0.9 phases.2.optim.weight_decay=0 --grid "phases.2.lr=[0.01,0.04,0.16]"
if want degradation; then  # the degradation's strength and type, forked from θ*, default recovery
sweep d1_strength train "$FIRST" --grid "phases.1.lr=[0.001,0.02]"
sweep d3_noise train "$FIRST" phases.1.steps=0 recovery.degradation=noise --grid "recovery.noise_scale=[0.05,0.3]"
fi
if want rank; then  # the LoRA rank at the default recovery: 4 and 16 are new models (full runs);
# 8 is the parent's own model, its recovery re-run by a fork (bit-equal to the parent's): rank+parent joins rank
python -m loclin.sweep --config conf/lora_smollm2.yaml --seeds "$FIRST" --workers "$WORKERS" --out "$OUT/rank" --grid "lm.lora.rank=[4,16]" "${FIXED[@]}" \
  || echo "[map] rank: some points failed: see $OUT/rank/logs/"
sweep rank+parent degrade "$FIRST" --grid "lm.lora.rank=[8]"
fi
if [ "${ANALYZE:-1}" = 1 ]; then python analyze.py "$OUT" --out "$OUT/report"; fi  # ANALYZE=0: report later
