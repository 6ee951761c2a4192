#!/usr/bin/env bash
# `osteo eval` of three runs (ResNet18 and ResNet50 at 224², EfficientNet-B3 at 300², and their
# ensemble) on a 300-image test split, whole command, on each backend named in BACKENDS, alternated
# REPEATS times; the load average before and after each command is printed beside its wall time.
# The runs are trained one step from random weights (the workload is the same for any weights).
#
#   npm run build && bash bench/eval-engines.sh          (BACKENDS="wasm onnxruntime-cpu" REPEATS=2)
#   WORK=/tmp/osteo-eval-bench bash bench/eval-engines.sh   (keeps and reuses the data and runs there)
set -euo pipefail
cd "$(dirname "$0")/.."
NODE=${NODE:-node}
BACKENDS=${BACKENDS:-wasm onnxruntime-cpu}
REPEATS=${REPEATS:-2}
WORK=${WORK:-$(mktemp -d)}
osteo() { "$NODE" dist/cli.js "$@"; }
load() { cut -d' ' -f1 /proc/loadavg; }

data=$WORK/data
if [ ! -f "$data/splits.csv" ]; then
  # 3 × 334 films, 30 % test: 300 test images
  osteo data synth --dest "$data" --per-class 334 --size 320 --seed 11 >/dev/null
  osteo data split --data "$data" --val 0.1 --test 0.3 --seed 11 >/dev/null
fi
echo "test images: $(grep -c ',test,' "$data/splits.csv")"
runs=()
for spec in "resnet18 224" "resnet50 224" "efficientnet_b3 300"; do
  set -- $spec
  run=$WORK/runs/$1
  if [ ! -d "$run/last" ]; then
    osteo train --model "$1" --data "$data" --out "$run" --image-size "$2" --batch-size 2 --epochs 1 --max-steps 1 --backend wasm >/dev/null
  fi
  runs+=("$run")
done

echo "| repeat | backend | wall s | load before | load after |"
echo "|---|---|---|---|---|"
for repeat in $(seq 1 "$REPEATS"); do
  for backend in $BACKENDS; do
    before=$(load)
    start=$(date +%s.%N)
    osteo eval --run "${runs[@]}" --data "$data" --checkpoint last --backend "$backend" --out "$WORK/eval-$backend" >/dev/null
    end=$(date +%s.%N)
    printf '| %s | %s | %.1f | %s | %s |\n' "$repeat" "$backend" "$(echo "$end - $start" | bc)" "$before" "$(load)"
  done
done
