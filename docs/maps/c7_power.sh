#!/usr/bin/env bash
# The C7 power map: steering slopes on 800 held-out items, with 20 random and 20 shuffled-label
# null directions, the paired slope(δ̂) − slope(v̂) and the detectable slope, at the middle block
# and at the block where cos(δ, v) peaks (the C6 peak, held against the maximum over blocks of
# the shuffled-label null). Items: short yes/no questions of seven BIG-bench tasks.
# Resumable: a point with a summary is skipped.
#   bash docs/maps/c7_power.sh [OUT=runs/maps/c7_power] [qwen]
# Fetch once: python -m loclin.assets fetch smollm2-135m-instruct bigbench-yes-no
# (qwen: also qwen2.5-coder-0.5b-instruct). On 2 quiet CPU cores: ~12 min for SmolLM2 (0.34 s an item and
# block), ~35 min for the 0.5B (1.2 s an item and block).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c7_power}
BIGBENCH=(steer.source=bigbench steer.data=asset:bigbench-yes-no 'steer.template="{question}\nAnswer:"'
  steer.n_train=96 steer.n_heldout=800 steer.max_tokens=128 steer.batch_size=16)
point() {  # name, config, overrides
  local name=$1 config=$2; shift 2
  if compgen -G "$OUT/$name/*/version_*/summary.json" > /dev/null; then echo "[c7] $name: done"; return; fi
  echo "[c7] $name"
  python train.py --config "$config" "output_root=$OUT/$name" "experiment=$name" trainer.progress_bar=false "$@"
}
point smollm2_bigbench conf/steer_smollm2.yaml "${BIGBENCH[@]}"
if [[ ${2:-} == qwen ]]; then point qwen_bigbench conf/steer_qwen_offline.yaml "${BIGBENCH[@]}"; fi
python analyze.py "$OUT" --out "$OUT/report"
