#!/usr/bin/env bash
# Seed spread of one short training epoch (#25): nnseg in each precision this CPU runs, and nnU-Net's own trainer
# live when REF_PYTHON is set, each with several seeds, then mean ± sd of the fold's final validation Dice per class
# and the acceptance check (nnseg's mean ≥ nnU-Net's mean − 0.02 for every class, in each precision).
#
# Usage: [SEEDS="1 2 3"] [ITERATIONS=250] [EPOCHS=1] [FOLD=0] [PRECISIONS="fp32 bf16"] [REF_PYTHON=/tmp/ref/bin/python] \
#        [WORK=/tmp/spread] bash Ops/bench/training_seed_spread.sh
# One run = plan + preprocess once, then 1 epoch × ITERATIONS iterations (batch and patch from the plans, as
# nnUNetv2_train with a 1-epoch trainer) and the validation of the fold's cases. On 2 AVX2 cores a 250-iteration run
# takes about 45 min for nnseg fp32 and 60 min for nnU-Net; runs already in WORK/runs.jsonl are not repeated.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
DATASET=${DATASET:-../shared/data/Dataset004_Hippocampus}
SEEDS=${SEEDS:-1 2 3}
ITERATIONS=${ITERATIONS:-250}
EPOCHS=${EPOCHS:-1}
FOLD=${FOLD:-0}
PRECISIONS=${PRECISIONS:-fp32 bf16}
WORK=${WORK:-$(mktemp -d /tmp/nnseg-seed-spread.XXXXXX)}
mkdir -p "$WORK"
RUNS="$WORK/runs.jsonl"
touch "$RUNS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

swift build -c release --product nnseg >/dev/null
NNSEG="$(swift build -c release --show-bin-path)/nnseg"
echo "work folder: $WORK (per-run logs there); seeds: $SEEDS; $ITERATIONS iterations; fold $FOLD"

done_already() { python3 Ops/bench/spread_runs.py has "$RUNS" "$1" "$2" "$3" "$ITERATIONS" "$EPOCHS"; }

if [[ ! -d "$WORK/nnseg-pre" ]]; then
  "$NNSEG" plan -d "$DATASET" --output "$WORK/nnseg-pre" > "$WORK/nnseg-plan.log" 2>&1
  "$NNSEG" preprocess -d "$DATASET" --output "$WORK/nnseg-pre" -c 3d_fullres > "$WORK/nnseg-preprocess.log" 2>&1
fi
name=$(basename "$DATASET")
declare -A unavailable=()
[[ -n "${REF_PYTHON:-}" ]] || echo "REF_PYTHON not set: nnU-Net's trainer not run (set it to a Python with torch and nnunetv2 2.8.1)"
# Seed by seed (nnseg in each precision, then nnU-Net), so that an interrupted spread still pairs the two sides.
for seed in $SEEDS; do
  for precision in $PRECISIONS; do
    [[ -n "${unavailable[$precision]:-}" ]] && continue
    done_already nnseg "$precision" "$seed" && continue
    run="nnseg-$precision-seed$seed"; [[ "$EPOCHS" == 1 ]] || run="$run-epochs$EPOCHS"
    results="$WORK/$run"
    log="$WORK/$run.log"
    rm -rf "$results"
    echo "nnseg $precision seed $seed: training ($(date +%H:%M:%S))"
    start=$(date +%s.%N)
    if ! "$NNSEG" train -d "$DATASET" --output "$WORK/nnseg-pre" --results "$results" -c 3d_fullres -f "$FOLD" --epochs "$EPOCHS" \
         --iterations "$ITERATIONS" --seed "$seed" --precision "$precision" > "$log" 2>&1; then
      if grep -q "need AVX-512" "$log"; then
        echo "nnseg $precision: not available on this CPU — $(grep -o 'this CPU.*' "$log" | head -1)"
        unavailable[$precision]=1
        continue
      fi
      echo "nnseg $precision seed $seed failed; see $log" >&2
      exit 1
    fi
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    python3 Ops/bench/spread_runs.py line "$results/$name/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_$FOLD/validation/summary.json" \
      nnseg "$precision" "$seed" "$ITERATIONS" "$EPOCHS" --seconds "$seconds" >> "$RUNS"
    tail -1 "$RUNS"
  done
  if [[ -n "${REF_PYTHON:-}" ]] && ! done_already nnU-Net fp32 "$seed"; then
    echo "nnU-Net seed $seed: training ($(date +%H:%M:%S))"
    log="$WORK/nnunet-seed$seed.log"; [[ "$EPOCHS" == 1 ]] || log="$WORK/nnunet-seed$seed-epochs$EPOCHS.log"
    "$REF_PYTHON" Ops/bench/nnunet_train.py "$DATASET" "$WORK/nnunet" "$FOLD" "$seed" "$ITERATIONS" --epochs "$EPOCHS" > "$log" 2>&1 \
      || { echo "nnU-Net seed $seed failed; see $log" >&2; exit 1; }
    grep '^RESULT ' "$log" | tail -1 | cut -c8- >> "$RUNS"
    tail -1 "$RUNS"
  fi
done

python3 Ops/bench/seed_spread_summary.py "$RUNS" "$DATASET/dataset.json" "$ITERATIONS" --epochs "$EPOCHS"
