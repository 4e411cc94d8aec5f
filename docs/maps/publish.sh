#!/usr/bin/env bash
# Publish the maps: analyze every map under runs/maps/, copy its records (cells.json) into
# docs/results/maps/<name>/ beside the command.txt that says how it was run (written once by hand:
# the script's command and which points were run), then regenerate docs/results.md. Points already
# published but not under runs/maps/ (run on another machine) are kept: analyze.py --merge.
#   bash docs/maps/publish.sh [MAPS=runs/maps]
set -euo pipefail
cd "$(dirname "$0")/../.."
MAPS=${1:-runs/maps}
for dir in "$MAPS"/*/; do
  name=$(basename "$dir")
  published="docs/results/maps/$name/cells.json"
  merge=(); [ -f "$published" ] && merge=(--merge "$published")
  if ! python analyze.py "$dir" --out "$dir/report" "${merge[@]}" > /dev/null; then echo "[publish] $name: no finished point"; continue; fi
  mkdir -p "docs/results/maps/$name"
  cp "$dir/report/cells.json" "docs/results/maps/$name/"
  [ -f "docs/results/maps/$name/command.txt" ] || echo "bash docs/maps/$name.sh $dir" > "docs/results/maps/$name/command.txt"
  echo "[publish] $name: $(cat "docs/results/maps/$name/command.txt")"
done
python -m loclin.results
