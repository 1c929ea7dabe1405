#!/usr/bin/env bash
# Training-step benchmark (#9, #25) on the Hippocampus 3d_fullres configuration (batch 9, patch 40×56×40).
#
#   [REF_PYTHON=/tmp/ref/bin/python] [ITERATIONS=5] [LIVE_ITERATIONS=14] bash Ops/bench/training_step.sh [--znver5] [--gemm-too]
#
# 1. The network step alone (TrainingBenchmark: synthetic batches; forward, backward, loss, optimiser, per-phase and
#    per-primitive times, oneDNN's implementation names) in each precision this CPU runs, and fp32 once more with the
#    direct 3×3×3 kernels only (NNSEG_DNNL_WINOGRAD=0, the step before the depth-split Winograd path). --gemm-too also times fp32
#    with the depth-padded backward weights turned off (oneDNN's im2col + gemm on AVX2 CPUs), --znver5 a
#    -target-cpu znver5 build.
# 2. Whole trainers on real data with their own loaders, fold 0, LIVE_ITERATIONS iterations, median seconds per
#    iteration: `nnseg train` in each precision, and nnU-Net's trainer live in this same run when REF_PYTHON is set
#    (a Python with torch and nnunetv2 2.8.1) — the ratio printed at the end is measured, not quoted.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
DATASET=${DATASET:-../shared/data/Dataset004_Hippocampus}
LIVE_ITERATIONS=${LIVE_ITERATIONS:-14}
WORK=${WORK:-$(mktemp -d /tmp/nnseg-training-step.XXXXXX)}
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
swift build -c release --product TrainingBenchmark >/dev/null
swift build -c release --product nnseg >/dev/null
BIN="$(swift build -c release --show-bin-path)"
echo "work folder: $WORK"

nnunet_seconds=""
if [[ -n "${REF_PYTHON:-}" ]]; then
  echo "== nnU-Net's trainer, $LIVE_ITERATIONS iterations on fold 0 (plans and preprocesses on first use)"
  "$REF_PYTHON" Ops/bench/nnunet_train.py "$DATASET" "$WORK/nnunet" 0 1 "$LIVE_ITERATIONS" 1 --timing > "$WORK/nnunet.log" 2>&1 \
    || { echo "nnU-Net's trainer failed; see $WORK/nnunet.log" >&2; exit 1; }
  nnunet_seconds=$(grep '^RESULT ' "$WORK/nnunet.log" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()[7:])["seconds_per_iteration"])')
  echo "nnU-Net: median $nnunet_seconds s per iteration"
fi

for precision in fp32 bf16; do
  echo "== network step, default build, $precision"
  REFERENCE_SECONDS="$nnunet_seconds" "$BIN/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" "$precision"
done
echo "== network step, fp32, direct 3×3×3 kernels only (NNSEG_DNNL_WINOGRAD=0: no depth-split Winograd; the same on CPUs without AVX-512)"
NNSEG_DNNL_WINOGRAD=0 REFERENCE_SECONDS="$nnunet_seconds" "$BIN/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" fp32
if [[ " $* " == *" --gemm-too "* ]]; then
  echo "== network step, fp32, backward weights as oneDNN picks them for depth-padded layers (NNSEG_DNNL_DEPTH_PADDED_BACKWARD_WEIGHTS=0)"
  NNSEG_DNNL_DEPTH_PADDED_BACKWARD_WEIGHTS=0 REFERENCE_SECONDS="$nnunet_seconds" "$BIN/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" fp32
fi
if [[ " $* " == *" --znver5 "* ]]; then
  swift build -c release --product TrainingBenchmark --scratch-path .build-znver5 -Xswiftc -target-cpu -Xswiftc znver5 >/dev/null
  for precision in fp32 bf16; do
    echo "== network step, -target-cpu znver5, $precision"
    REFERENCE_SECONDS="$nnunet_seconds" "$(swift build -c release --scratch-path .build-znver5 --show-bin-path)/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" "$precision"
  done
fi

echo "== nnseg train, $LIVE_ITERATIONS iterations on fold 0 (real data, background loader)"
if [[ ! -d "$WORK/nnseg-pre" ]]; then
  "$BIN/nnseg" plan -d "$DATASET" --output "$WORK/nnseg-pre" > "$WORK/nnseg-plan.log" 2>&1
  "$BIN/nnseg" preprocess -d "$DATASET" --output "$WORK/nnseg-pre" -c 3d_fullres > "$WORK/nnseg-preprocess.log" 2>&1
fi
for precision in fp32 bf16; do
  rm -rf "$WORK/nnseg-results-$precision"
  if ! "$BIN/nnseg" train -d "$DATASET" --output "$WORK/nnseg-pre" --results "$WORK/nnseg-results-$precision" -c 3d_fullres -f 0 \
       --epochs 1 --iterations "$LIVE_ITERATIONS" --validation-iterations 1 --no-validation --seed 1 --precision "$precision" \
       > "$WORK/nnseg-train-$precision.log" 2>&1; then
    grep -q "need AVX-512" "$WORK/nnseg-train-$precision.log" && { echo "nnseg $precision: not available on this CPU"; continue; }
    echo "nnseg train $precision failed; see $WORK/nnseg-train-$precision.log" >&2; exit 1
  fi
  seconds=$(grep -o 'median_iteration_seconds=[0-9.]*' "$WORK/nnseg-train-$precision.log" | tail -1 | cut -d= -f2)
  wait_seconds=$(grep -o 'loader_wait_seconds=[0-9.]*' "$WORK/nnseg-train-$precision.log" | tail -1 | cut -d= -f2)
  echo "nnseg $precision: waiting for the loader ${wait_seconds:-?} s per iteration on average"
  if [[ -n "$nnunet_seconds" ]]; then
    echo "nnseg $precision: median $seconds s per iteration; nnU-Net live $nnunet_seconds s → nnseg is $(echo "scale=2; $nnunet_seconds / $seconds" | bc)× faster (goal ≥ 2×)"
  else
    echo "nnseg $precision: median $seconds s per iteration (set REF_PYTHON for nnU-Net's live figure and the ratio)"
  fi
done
