#!/usr/bin/env bash
# The GPU targets, as one script for the first GPU machine lent (under 8 minutes on one H200):
#   1. benchmarks/gpt2_step.py: a random-init GPT-2-124M step at 16×512 tokens without GeometryMonitor,
#      with it (W = 32, k = 8, gradients; the windows in host memory) and sketched (sketch_dim 2^20),
#      as ratios to the plain step of the same run (bf16-mixed and 32-true);
#   2. benchmarks/refresh_floor.py: a refresh against one read of the window on that machine's CPU,
#      at the default D = 404,736 and 4.6M (the windows live in host memory).
# Each writes a JSON record under OUT (default docs/results/performance/gpu); `python -m loclin results`
# renders them in docs/performance.md under "On a GPU". Nothing is downloaded: GPT-2 is built from its config.
#   bash benchmarks/gpu.sh [OUT]
#   bash benchmarks/gpu.sh --dry-run [OUT]    # the same steps on the CPU with a tiny model (seconds), for the tests
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-docs/results/performance/gpu}
mkdir -p "$OUT"
if [ "$DRY" = 1 ]; then
  STEP=(--device cpu --layers 1 --width 64 --batch 2 --seq 32 --steps 16 --window 4 --k 2 --sketch-dim 4096)
  REFRESH=(--dims 4096 --repeats 2)
  PRECISIONS=(32-true)
else
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: error: torch sees no GPU here (--dry-run runs on the CPU)')"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  STEP=(--device cuda)
  REFRESH=(--repeats 5)
  PRECISIONS=(bf16-mixed 32-true)
fi
for precision in "${PRECISIONS[@]}"; do
  suffix=$([ "$precision" = 32-true ] && echo "" || echo "_$precision")
  echo "[gpu] gpt2_step, $precision"
  python benchmarks/gpt2_step.py "${STEP[@]}" --precision "$precision" --json "$OUT/gpt2_step$suffix.json"
done
echo "[gpu] refresh_floor"
python benchmarks/refresh_floor.py "${REFRESH[@]}" --json "$OUT/refresh_floor.json"
echo "[gpu] records in $OUT: $(ls "$OUT" | tr '\n' ' ')"
