#!/usr/bin/env bash
# Training on a dataset larger than memory (#21): the data loader on memory-mapped cases inside a memory limit smaller
# than the dataset, against the time of a training step of the same configuration.
#
#   [LIMIT_MB=1024] [COPIES=32] [CACHE_MB=256] [BATCHES=20] [STEP_ITERATIONS=3] [WORK=/tmp/loader] bash Ops/bench/loader.sh
#
# 1. The CT benchmark's dataset (Ops/bench/make_ct_dataset.py: TotalSegmentator's example CT at 1.5 mm, 26 classes),
#    planned and preprocessed (3d_fullres: ~66 MB of arrays per case), then its two cases copied to COPIES cases under
#    new names (distinct files, so the page cache cannot share them): by default about twice LIMIT_MB.
# 2. The loader alone on one thread (TrainingBenchmark loader: sampling, crop, nnU-Net's augmentation) with
#    --data-storage mapped and a CACHE_MB cache, inside a memory cgroup of LIMIT_MB (page cache included, so the
#    dataset cannot stay in memory): seconds per batch, cases read from disk, peak RSS. Needs root for the cgroup
#    (without it the loader runs unlimited and says so).
# 3. The same loader with the dataset in memory and no limit (the ratio is the cost of reading from disk), and the
#    network step of this configuration (TrainingBenchmark, synthetic batches, STEP_ITERATIONS iterations at
#    STEP_BATCH, default 1 — the planned batch of 2 at 128³ does not fit in 23 GB in nnseg's trainer — scaled to the
#    planned batch). The loader keeps up when its seconds per batch stay below the step's (it runs on its own thread).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source Ops/env.sh
PY="$ROOT/.venv-validate/bin/python"
[[ -x "$PY" ]] || { echo "loader: run bash Ops/setup.sh --test first" >&2; exit 2; }
LIMIT_MB=${LIMIT_MB:-1024}
COPIES=${COPIES:-32}
CACHE_MB=${CACHE_MB:-256}
BATCHES=${BATCHES:-20}
STEP_ITERATIONS=${STEP_ITERATIONS:-3}
WORK=${WORK:-$(mktemp -d /tmp/nnseg-loader.XXXXXX)}
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
swift build -c release --product TrainingBenchmark >/dev/null
swift build -c release --product nnseg >/dev/null
BIN="$(swift build -c release --show-bin-path)"
NAME=Dataset990_CTLoader
RAW="$WORK/raw/$NAME"
PRE="$WORK/pre"
echo "work folder: $WORK"

if [[ ! -f "$PRE/$NAME/nnUNetPlans.json" ]]; then
  "$PY" Ops/bench/make_ct_dataset.py "$RAW"
  "$BIN/nnseg" plan -d "$RAW" --output "$PRE" > "$WORK/plan.log" 2>&1
  "$BIN/nnseg" preprocess -d "$RAW" --output "$PRE" -c 3d_fullres > "$WORK/preprocess.log" 2>&1
fi
DATA="$PRE/$NAME/nnUNetPlans_3d_fullres"
for k in $(seq 2 $((COPIES - 1))); do
  id=$(printf "ct_%03d" $((k + 100)))
  [[ -f "$DATA/$id.npy" ]] && continue
  for suffix in .npy _seg.npy .json; do cp "$DATA/ct_00$((k % 2))$suffix" "$DATA/$id$suffix"; done
done
sync
echo "dataset: $COPIES cases, $(du -sm "$DATA" | cut -f1) MB preprocessed (memory limit ${LIMIT_MB} MB, cache ${CACHE_MB} MB)"

# The loader in a memory cgroup (v2 or v1) smaller than the dataset.
run_limited() {
  local group=""
  if [[ -w /sys/fs/cgroup/cgroup.subtree_control ]] && grep -q memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    group=/sys/fs/cgroup/nnseg-loader-$$; mkdir "$group"; echo $((LIMIT_MB << 20)) > "$group/memory.max"
  elif [[ -w /sys/fs/cgroup/memory ]]; then
    group=/sys/fs/cgroup/memory/nnseg-loader-$$; mkdir "$group"; echo $((LIMIT_MB << 20)) > "$group/memory.limit_in_bytes"
  fi
  if [[ -z "$group" ]]; then
    echo "(no writable memory cgroup: the loader runs without a memory limit)"
    "$@"
  else
    # Drop this dataset's pages first so the run starts from disk.
    sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
    bash -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$group" "$@" || echo "(exit status $?)"
    rmdir "$group" 2>/dev/null || true
  fi
}
echo "== loader, mapped cases, in ${LIMIT_MB} MB"
run_limited "$BIN/TrainingBenchmark" loader "$PRE/$NAME/nnUNetPlans.json" 3d_fullres "$DATA" mapped "$CACHE_MB" "$BATCHES" 7 | tee "$WORK/loader.log" | tail -4
echo "== memory storage without a limit (the dataset read whole and cached), for comparison"
"$BIN/TrainingBenchmark" loader "$PRE/$NAME/nnUNetPlans.json" 3d_fullres "$DATA" memory 65536 "$BATCHES" 7 > "$WORK/loader-memory.log" 2>&1 || true
tail -1 "$WORK/loader-memory.log"
loader=$(grep '^RESULT loader' "$WORK/loader.log" | grep -o 'median_s=[0-9.]*' | cut -d= -f2)
memory=$(grep '^RESULT loader' "$WORK/loader-memory.log" | grep -o 'median_s=[0-9.]*' | cut -d= -f2 || true)
[[ -n "$memory" && -n "$loader" ]] && python3 -c "import sys; print(f'mapped in {sys.argv[3]} MB: {float(sys.argv[1]) / float(sys.argv[2]):.2f}x the time per batch of the in-memory loader')" "$loader" "$memory" "$LIMIT_MB"
if [[ "$STEP_ITERATIONS" -gt 0 ]]; then
  # The network step of this configuration (TrainingBenchmark on synthetic batches). The planned batch of 2 at 128³
  # needs more than 20 GB in nnseg's trainer; STEP_BATCH (default 1) is timed and scaled to the planned batch.
  planned=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['configurations']['3d_fullres']['batch_size'])" "$PRE/$NAME/nnUNetPlans.json")
  echo "== training step of the same configuration, batch ${STEP_BATCH:-1} (planned: $planned), $STEP_ITERATIONS iterations"
  PLANS_FILE="$PRE/$NAME/nnUNetPlans.json" CLASSES=26 BATCH="${STEP_BATCH:-1}" \
    "$BIN/TrainingBenchmark" "$PWD" "$STEP_ITERATIONS" fp32 > "$WORK/step.log" 2>&1 || echo "(the step benchmark failed; see $WORK/step.log)"
  step=$(grep '^RESULT step' "$WORK/step.log" | grep -o 'median_s=[0-9.]*' | cut -d= -f2 || true)
  if [[ -n "$step" && -n "$loader" ]]; then
    python3 -c "import sys; l, s, b, p = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]); e = s * p / b; print(f'loader {l:.2f} s per batch of {p} vs training step {s:.2f} s at batch {b} (~{e:.1f} s at batch {p}, scaled linearly): the loader needs {100 * l / e:.0f} % of a step ({\"keeps up\" if l < e else \"does NOT keep up\"})')" "$loader" "$step" "${STEP_BATCH:-1}" "$planned"
  fi
fi
