#!/usr/bin/env bash
# What osteo's GPU paths do on this machine, in a few minutes: the environment (`osteo info --json`,
# with the WebGPU adapter and, where nvidia-smi sees a GPU, why tfjs-node-gpu is or is not usable),
# the webgpu gradient kernels against tfjs-backend-webgpu's own, `osteo bench train|infer
# --backend webgpu` on the three published models at their sizes, and `osteo bench infer` on
# onnxruntime's WebGPU provider (and its CUDA provider where this install has it). Where PyTorch sees a CUDA GPU,
# the same workloads in PyTorch (fp32, TF32 off) and the ratio osteo ÷ PyTorch in images/s.
#
#   npm run build && bash scripts/gpu-check.sh            (STEPS=5 WARMUP=2 by default)
#   NODE=/path/to/node PYTHON=python3 bash scripts/gpu-check.sh
#   WORKLOADS="resnet18 32 2" KERNEL_BATCH=1 STEPS=1 bash scripts/gpu-check.sh   (a quick run, as the tests do)
#
# Everything goes to stdout as it is measured; each JSON document is on its own lines after a "== "
# header. A step that fails is reported and the script goes on (the exit status counts failures).
set -uo pipefail
cd "$(dirname "$0")/.."

NODE=${NODE:-node}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
# "model size batch" per workload, ';' between them
WORKLOADS=${WORKLOADS:-resnet18 224 32;resnet50 224 32;efficientnet_b3 300 16}
KERNEL_BATCH=${KERNEL_BATCH:-32}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
failures=0

if [ ! -f dist/cli.js ]; then
  echo "dist/cli.js is missing: run npm run build first" >&2
  exit 2
fi

step() {
  local title=$1
  shift
  echo "== $title"
  if ! "$@"; then
    echo "!! failed: $title" >&2
    failures=$((failures + 1))
    return 1
  fi
}

echo "== machine"
date -u +"%Y-%m-%dT%H:%M:%SZ"
uname -srm
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null

step "osteo info --json" "$NODE" dist/cli.js info --json
step "osteo info --json --backend webgpu" "$NODE" dist/cli.js info --json --backend webgpu

torch_cuda=no
if "$PYTHON" -c 'import sys, torch, torchvision; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  torch_cuda=yes
fi
echo "== PyTorch with CUDA: $torch_cuda"

if [ -f bench/webgpu-grad.ts ] && [ -d node_modules/tsx ]; then
  step "webgpu gradient kernels: tfjs-backend-webgpu's own vs osteo's (ms, batch $KERNEL_BATCH)" \
    "$NODE" --import tsx bench/webgpu-grad.ts --batch "$KERNEL_BATCH" --repeats 3
fi

# onnxruntime's CUDA provider is measured where this install has it (npm ci --onnxruntime-node-install=cuda12)
ort_cuda=no
if "$NODE" dist/cli.js info --json --backend onnxruntime-cuda >/dev/null 2>&1; then
  ort_cuda=yes
fi
echo "== onnxruntime CUDA provider installed: $ort_cuda"
# "mode backend" pairs: training runs on the webgpu (tfjs) engine; inference on it and on onnxruntime's providers
pairs=("train webgpu" "infer webgpu" "infer onnxruntime-webgpu")
[ "$ort_cuda" = yes ] && pairs+=("infer onnxruntime-cuda")

IFS=';' read -r -a workloads <<<"$WORKLOADS"
summary=()
for pair in "${pairs[@]}"; do
  read -r mode backend <<<"$pair"
  for workload in "${workloads[@]}"; do
    read -r model size batch <<<"$workload"
    args=(--model "$model" --image-size "$size" --batch-size "$batch" --steps "$STEPS" --warmup "$WARMUP")
    osteo=$("$NODE" dist/cli.js bench "$mode" "${args[@]}" --backend "$backend" --json)
    status=$?
    echo "== osteo bench $mode ${args[*]} --backend $backend --json"
    echo "$osteo"
    if [ $status -ne 0 ]; then
      echo "!! failed: osteo bench $mode $model --backend $backend" >&2
      failures=$((failures + 1))
      continue
    fi
    line="$mode $model ${size}² batch $batch: osteo $backend $(echo "$osteo" | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).imagesPerSec.toPrecision(3)))') img/s"
    if [ "$torch_cuda" = yes ]; then
      torch=$("$PYTHON" bench/torch_reference.py "$mode" --model "$model" --image-size "$size" --batch-size "$batch" --steps "$STEPS" --warmup "$WARMUP" --device cuda)
      echo "== PyTorch $mode $model ${size}² batch $batch on cuda (fp32)"
      echo "$torch"
      ratio=$(printf '%s\n%s\n' "$osteo" "$torch" | "$NODE" -e '
        let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
          const [o, t] = s.split(/\n(?=\{)/).map((x) => JSON.parse(x));
          console.log(`PyTorch ${t.imagesPerSec.toPrecision(3)} img/s, ratio ${(o.imagesPerSec / t.imagesPerSec).toFixed(3)}`);
        });')
      line="$line, $ratio"
    fi
    summary+=("$line")
  done
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failures"
