#!/usr/bin/env bash
# Retrain the embedded Fashion-MNIST LPD from scratch (about 75-90 minutes on 2 CPU cores), then export it.
# Resumable: rerun the same command after an interruption (the token cache and the trainer both resume).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fmnist}

# 1. 60k training images -> 8x8 codes of the shipped tokenizer, each image and its horizontal flip
lpdgen cache --dataset fmnist --tokenizer fmnist --out runs/cache_fmnist

# 2. width 192, depth 6 (2.9M parameters): 6,000 steps of 64 images (6.4 epochs), lr 1e-3 constant
#    after a 100-step warm-up, cosine to 2e-5 over the second half; every schedule of 64 tokens drawn
#    uniformly per step; 10% null-class drop for guidance; no dropout (the run is short).
lpdgen train --data runs/cache_fmnist --model scripts/fmnist_model.json --out-dir "$OUT" \
    --global-batch 64 --steps 6000 --lr-unit step --warmup 100 --decay-start 3000 --base-lr 4e-3 --min-lr 2e-5 \
    --precision fp32 --checkpoint-every 100 --sample-every 1000 --sample-steps 8 --sample-cfg 3.0 \
    --keep-last 3 --log-every 10 --no-tensorboard --resume auto

# 3. the pipeline folder, with the sampling defaults chosen by benchmarks/quality.py (docs/pretrained.md)
python scripts/export_pretrained.py "$OUT" "${EXPORT:-runs/lpd_fmnist}" --steps 8 --cfg 3.0 --fp16
