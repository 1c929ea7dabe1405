#!/usr/bin/env bash
# Training on a dataset larger than memory (#21): the data loader on memory-mapped cases inside a memory limit smaller
# than the dataset, against the time of a training step of the same configuration.
#
#   [LIMIT_MB=1024] [COPIES=24] [CACHE_MB=256] [BATCHES=20] [STEP_ITERATIONS=3] [WORK=/tmp/loader] bash Ops/bench/loader.sh
#
# 1. The CT benchmark's dataset (Ops/bench/make_ct_dataset.py: TotalSegmentator's example CT at 1.5 mm, 26 classes),
#    planned and preprocessed (3d_fullres: ~66 MB of arrays per case), then its two cases copied to COPIES cases under
#    new names (distinct files, so the page cache cannot share them): by default about twice LIMIT_MB.
# 2. The loader alone on one thread (TrainingBenchmark loader: sampling, crop, nnU-Net's augmentation) with
#    --data-storage mapped and a CACHE_MB cache, inside a memory cgroup of LIMIT_MB (page cache included, so the
#    dataset cannot stay in memory): seconds per batch, cases read from disk, peak RSS. Needs root for the cgroup
#    (without it the loader runs unlimited and says so).
# 3. `nnseg train` of the same configuration for STEP_ITERATIONS iterations (no validation), outside the limit: the
#    median seconds per iteration. The loader keeps up when its seconds per batch stay below that (it runs on its
#    own thread beside the step).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source Ops/env.sh
PY="$ROOT/.venv-validate/bin/python"
[[ -x "$PY" ]] || { echo "loader: run bash Ops/setup.sh --test first" >&2; exit 2; }
LIMIT_MB=${LIMIT_MB:-1024}
COPIES=${COPIES:-24}
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
    bash -c 'echo $$ > "$0/cgroup.procs"; shift; exec "$@"' "$group" "$@" || echo "(exit status $?)"
    rmdir "$group" 2>/dev/null || true
  fi
}
echo "== loader, mapped cases, in ${LIMIT_MB} MB"
run_limited "$BIN/TrainingBenchmark" loader "$PRE/$NAME/nnUNetPlans.json" 3d_fullres "$DATA" mapped "$CACHE_MB" "$BATCHES" 7 | tee "$WORK/loader.log" | tail -4
echo "== training step of the same configuration (outside the limit), $STEP_ITERATIONS iterations"
rm -rf "$WORK/results"
"$BIN/nnseg" train -d "$RAW" --output "$PRE" --results "$WORK/results" -c 3d_fullres -f all --epochs 1 --iterations "$STEP_ITERATIONS" \
  --validation-iterations 0 --no-validation --seed 1 --data-storage mapped --data-cache-gb 0.25 > "$WORK/train.log" 2>&1 || true
step=$(grep -o 'median_iteration_seconds=[0-9.]*' "$WORK/train.log" | tail -1 | cut -d= -f2)
loader=$(grep '^RESULT loader' "$WORK/loader.log" | grep -o 'median_s=[0-9.]*' | cut -d= -f2)
if [[ -n "$step" && -n "$loader" ]]; then
  python3 -c "import sys; l, s = float(sys.argv[1]), float(sys.argv[2]); print(f'loader {l:.2f} s per batch vs training step {s:.2f} s: the loader needs {100 * l / s:.0f} % of a step ({\"keeps up\" if l < s else \"does NOT keep up\"})')" "$loader" "$step"
else
  echo "could not read both times; see $WORK/loader.log and $WORK/train.log"
fi
