#!/usr/bin/env bash
# GPU readiness of the decoding engine, on a CUDA machine, from the repository root:
#
#     bash benchmarks/gpu_check.sh [out_dir]          # default out_dir: bench_gpu
#
# 1. the device tests (tests/test_cuda.py, on cpu and cuda): bf16 autocast decoding keeps every
#    confident fp32 greedy token, a FlexAttention training step equals the dense-mask step, decoding
#    with the step compiled as CUDA graphs (mode="reduce-overhead") gives the eager tokens;
#    plus tests/test_engine.py and tests/test_generation.py on the same machine;
# 2. `lpdgen bench` on LPD-L (random weights), 20 steps, guidance, bf16 eager and bf16 compiled, at
#    batch 1 (latency) and 64 (throughput), printed next to the paper's A100 figures.
set -euo pipefail
OUT=${1:-bench_gpu}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
PY

python -m pytest -q tests/test_cuda.py tests/test_engine.py tests/test_generation.py

python -m lpdgen.cli bench --config lpd-l --steps 20 --variants bf16 bf16-compiled \
    --latency-batch 1 --throughput-batch 64 --repeats 5 --warmup 2 --device cuda --out-dir "$OUT"

python - "$OUT/bench.json" <<'PY'
import json, sys
PAPER = {"latency_s": 0.28, "throughput_img_s": 139.0}  # LPD-L, 20 steps, A100, bf16, with guidance
rows = json.load(open(sys.argv[1]))["rows"]
print(f"{'LPD-L, 20 steps':<24}{'latency b=1 (s)':>18}{'throughput b=64 (img/s)':>26}")
print(f"{'paper (A100, bf16)':<24}{PAPER['latency_s']:>18.3f}{PAPER['throughput_img_s']:>26.1f}")
for variant in dict.fromkeys(r["variant"] for r in rows):
    lat = next(r["seconds"] for r in rows if r["variant"] == variant and r["batch"] == 1)
    thr = next(r["images_per_s"] for r in rows if r["variant"] == variant and r["batch"] == 64)
    print(f"{'lpdgen ' + variant:<24}{lat:>18.3f}{thr:>26.1f}")
PY
