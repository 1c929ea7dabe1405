#!/usr/bin/env bash
# Draws of nnU-Net's training pipeline at nnseg's speed (#25): for each seed, nnU-Net's initial weights and the
# batches its loader draws (nnunet_replay.py --batches-only, one process, seeded), one epoch of nnseg's training step
# on them (TrainingBenchmark replay — the step equals nnU-Net's to rounding, see Ops/bench/README) and nnseg's
# validation of fold 0 with the resulting weights. Each run is a line in WORK/runs.jsonl with the side
# "nnU-Net data, nnseg step", next to training_seed_spread.sh's runs, and the summary compares nnseg's own seeds with
# nnU-Net's live runs and with all draws of nnU-Net's pipeline pooled.
#
# BATCHES=nnseg swaps the batches: nnU-Net's initial weights of the seed (nnunet_replay.py --init-only) trained on
# the batches nnseg's loader draws for the same seed (TrainingBenchmark dump — those of `nnseg train --seed <seed>`),
# side "nnU-Net init, nnseg data, nnseg step". With the initial weights' law and the step shown equal, these draws
# differ from the replayed ones in the loader alone, and from nnseg's own in the initial weights alone.
#
# EPOCHS=N: N epochs of ITERATIONS iterations (N × ITERATIONS batches, nnU-Net's poly learning rate over the N
# epochs), the lower-variance operating point; such runs carry "epochs" in WORK/runs.jsonl.
#
# Usage: REF_PYTHON=/tmp/ref/bin/python [SEEDS="4 5 6"] [ITERATIONS=250] [EPOCHS=1] [PRECISION=bf16] [WORK=/tmp/spread] \
#        [BATCHES=nnunet|nnseg] [KEEP_BATCHES=1] bash Ops/bench/training_replay_spread.sh
# Fold 0 (what nnunet_replay.py records). PRECISION is nnseg's step: bf16 and fp32 end each draw at the same Dice
# (within 0.003 on the seeds compared), bf16 is about twice as fast. A draw's batches take 1.3 GB; they are deleted
# after its replay unless KEEP_BATCHES=1. Per draw on 2 Zen 4 cores: 3 min recording, 13 min (bf16) replay, 2 min
# validation. Runs already in WORK/runs.jsonl are not repeated.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
DATASET=${DATASET:-../shared/data/Dataset004_Hippocampus}
SEEDS=${SEEDS:-4 5 6}
ITERATIONS=${ITERATIONS:-250}
EPOCHS=${EPOCHS:-1}
TOTAL=$((ITERATIONS * EPOCHS))
PRECISION=${PRECISION:-bf16}
WORK=${WORK:-$(mktemp -d /tmp/nnseg-replay-spread.XXXXXX)}
[[ -n "${REF_PYTHON:-}" ]] || { echo "set REF_PYTHON to a Python with torch and nnunetv2 2.8.1 (nnU-Net's loader draws the batches)" >&2; exit 2; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$WORK"
RUNS="$WORK/runs.jsonl"
touch "$RUNS"
BATCHES=${BATCHES:-nnunet}
case "$BATCHES" in
  nnunet) SIDE="nnU-Net data, nnseg step"; PREFIX=replay ;;
  nnseg) SIDE="nnU-Net init, nnseg data, nnseg step"; PREFIX=swap ;;
  *) echo "BATCHES is nnunet or nnseg, not $BATCHES" >&2; exit 2 ;;
esac

swift build -c release --product nnseg >/dev/null
swift build -c release --product TrainingBenchmark >/dev/null
BIN="$(swift build -c release --show-bin-path)"
name=$("$REF_PYTHON" Ops/bench/nnunet_seeded.py prepare "$DATASET" "$WORK/nnunet")
if [[ ! -d "$WORK/nnseg-pre/$name/nnUNetPlans_3d_fullres" ]]; then
  "$BIN/nnseg" plan -d "$DATASET" --output "$WORK/nnseg-pre" > "$WORK/nnseg-plan.log" 2>&1
  "$BIN/nnseg" preprocess -d "$DATASET" --output "$WORK/nnseg-pre" -c 3d_fullres > "$WORK/nnseg-preprocess.log" 2>&1
fi
echo "work folder: $WORK; seeds: $SEEDS; $EPOCHS × $ITERATIONS iterations; $BATCHES's batches; nnseg step $PRECISION; fold 0"
SUFFIX=""; [[ "$EPOCHS" == 1 ]] || SUFFIX="-epochs$EPOCHS"

for seed in $SEEDS; do
  python3 Ops/bench/spread_runs.py has "$RUNS" "$SIDE" "$PRECISION" "$seed" "$ITERATIONS" "$EPOCHS" && continue
  draw="$WORK/$PREFIX/seed$seed$SUFFIX"
  weights="$draw/final-nnseg-$PRECISION.pth"
  if [[ ! -f "$weights" ]]; then
    if [[ ! -f "$draw/batches/$(printf %05d "$((TOTAL - 1))").target" ]]; then
      rm -rf "$draw"
      if [[ "$BATCHES" == nnunet ]]; then
        echo "seed $seed: nnU-Net's initial weights and $TOTAL batches ($(date +%H:%M:%S))"
        "$REF_PYTHON" Ops/bench/nnunet_replay.py "$WORK/nnunet" "$name" "$seed" "$TOTAL" "$draw" --batches-only \
          > "$WORK/$PREFIX-seed$seed$SUFFIX.log" 2>&1 || { echo "recording seed $seed failed; see $WORK/$PREFIX-seed$seed$SUFFIX.log" >&2; exit 1; }
      else
        echo "seed $seed: nnU-Net's initial weights, nnseg's $TOTAL batches ($(date +%H:%M:%S))"
        { "$REF_PYTHON" Ops/bench/nnunet_replay.py "$WORK/nnunet" "$name" "$seed" "$TOTAL" "$draw/nnunet" --init-only \
            && "$BIN/TrainingBenchmark" dump "$WORK/nnseg-pre/$name" 0 "$seed" "$TOTAL" "$draw" "$draw/nnunet/init.pth"; } \
          > "$WORK/$PREFIX-seed$seed$SUFFIX.log" 2>&1 || { echo "recording seed $seed failed; see $WORK/$PREFIX-seed$seed$SUFFIX.log" >&2; exit 1; }
      fi
    fi
    echo "seed $seed: nnseg's $PRECISION step on them ($(date +%H:%M:%S))"
    "$BIN/TrainingBenchmark" replay "$draw" "$PRECISION" "$TOTAL" "$EPOCHS" > "$WORK/$PREFIX-seed$seed$SUFFIX-$PRECISION.log" 2>&1 \
      || { echo "replay of seed $seed failed; see $WORK/$PREFIX-seed$seed$SUFFIX-$PRECISION.log" >&2; exit 1; }
  fi
  [[ "${KEEP_BATCHES:-0}" == 1 ]] || rm -rf "$draw/batches" "$draw/ds"

  echo "seed $seed: validation of fold 0 ($(date +%H:%M:%S))"
  results="$WORK/$PREFIX-$PRECISION-seed$seed$SUFFIX"
  model="$results/$name/nnUNetTrainer__nnUNetPlans__3d_fullres"
  rm -rf "$results"
  mkdir -p "$model/fold_0"
  cp "$WORK/nnseg-pre/$name/nnUNetPlans.json" "$model/plans.json"
  cp "$WORK/nnseg-pre/$name/dataset.json" "$WORK/nnseg-pre/$name/dataset_fingerprint.json" "$model/"
  cp "$weights" "$model/fold_0/checkpoint_final.pth"
  "$BIN/nnseg" train -d "$DATASET" --output "$WORK/nnseg-pre" --results "$results" -f 0 --val \
    > "$WORK/$PREFIX-seed$seed$SUFFIX-$PRECISION-validation.log" 2>&1 \
    || { echo "validation of seed $seed failed; see $WORK/$PREFIX-seed$seed$SUFFIX-$PRECISION-validation.log" >&2; exit 1; }
  python3 Ops/bench/spread_runs.py line "$model/fold_0/validation/summary.json" "$SIDE" "$PRECISION" "$seed" "$ITERATIONS" \
    "$EPOCHS" >> "$RUNS"
  tail -1 "$RUNS"
done

python3 Ops/bench/seed_spread_summary.py "$RUNS" "$DATASET/dataset.json" "$ITERATIONS" --epochs "$EPOCHS"
