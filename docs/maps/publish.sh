#!/usr/bin/env bash
# Publish the maps: merge every map under runs/maps/ into docs/results/maps/<name>/cells.json, all
# or nothing (a point is replaced only by one made by the same run digest; a sweep of another
# model or parent in the folder is refused with one line and nothing is written), then regenerate
# docs/results.md. Points already published but not under runs/maps/ (run on another machine) are
# kept. command.txt says how each map was run (written once, then by hand).
#   bash docs/maps/publish.sh [MAPS=runs/maps] [--separate]
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m loclin publish "${1:-runs/maps}" "${@:2}"
