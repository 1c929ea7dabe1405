#!/usr/bin/env bash
# CT-scale inference (issue #16): the issue's case — the TotalSegmentator example CT (122×101×112 at 3 mm,
# ../shared/data/totalseg-example/example_ct.nii.gz) predicted by a 3d_fullres model planned at 1.5 mm
# (resampled to 244×202×224: 27 tiles of 128³), 26 classes (25 labels from HU bands × body slabs), seeded random
# weights (`nnseg init-model`; no trained CT model ships with the project).
#
#   bash Ops/bench/ct_fullres.sh                    # default planner; PLANNER=resenc-m for ResEnc-M
#   REF_PYTHON=/tmp/ref/bin/python bash Ops/bench/ct_fullres.sh   # also nnUNetv2_predict, alternating (RUNS=2)
#   CROP=64 bash Ops/bench/ct_fullres.sh            # a quick smoke run on a 64³ crop
#   THREADS=1 WORK=/tmp/ct bash Ops/bench/ct_fullres.sh   # nnseg on one CPU (per-stage times at 1 thread)
#   BF16=1 WORK=/tmp/ct bash Ops/bench/ct_fullres.sh      # also nnseg --precision bf16 (AVX-512 CPUs), alternating with
#                                                         # fp32: speed ratio, voxel agreement and per-label Dice vs fp32
#
# Prints wall, CPU, peak RSS (/usr/bin/time -v) and nnseg's per-stage times; with REF_PYTHON the ratios and
# the voxel agreement.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source Ops/env.sh
PLANNER="${PLANNER:-default}" RUNS="${RUNS:-1}" CROP="${CROP:-0}" THREADS="${THREADS:-}" BF16="${BF16:-0}"
# THREADS=1: nnseg pinned to one CPU (taskset, OMP_NUM_THREADS=1), for the per-stage 1- vs 2-thread table.
PIN=""
if [[ "$THREADS" == 1 ]]; then PIN="taskset -c 0 env OMP_NUM_THREADS=1"; fi
PY="$ROOT/.venv-validate/bin/python"
[[ -x "$PY" ]] || { echo "ct_fullres: run bash Ops/setup.sh --test first (python venv with numpy)" >&2; exit 2; }
swift build -c release --product nnseg >/dev/null
NNSEG="$ROOT/.build/release/nnseg"
WORK="${WORK:-$(mktemp -d)}"
echo "ct_fullres: working in $WORK (planner $PLANNER)"

# 1. A raw dataset: two training cases at 1.5 mm (the CT upsampled ×2 and its mirror) so that planning targets
#    1.5 mm, and the CT itself at 3 mm as the case to predict. Labels: 5 HU bands × 5 slabs along z inside the body.
"$PY" Ops/bench/make_ct_dataset.py "$WORK/Dataset901_CTBench" "$CROP"

# 2. Plan (no preprocessing needed for inference) and a model with seeded random weights.
"$NNSEG" plan -d "$WORK/Dataset901_CTBench" --output "$WORK/pre" --planner "$PLANNER" --log-level warning
PLANS=$(ls "$WORK"/pre/Dataset901_CTBench/*Plans*.json | head -1)
"$NNSEG" init-model --plans "$PLANS" --dataset-json "$WORK/Dataset901_CTBench/dataset.json" -c 3d_fullres --seed 1 -o "$WORK/model"
python3 - "$PLANS" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["configurations"]["3d_fullres"]
arch = p.get("architecture", {}).get("arch_kwargs", {})
print(f"3d_fullres: patch {p['patch_size']}, spacing {p['spacing']}, stages {arch.get('features_per_stage')}")
PY

# 3. Predict (no mirroring, as in the issue's table), measured by /usr/bin/time -v.
measure() {  # label, command… → prints wall/cpu/rss
  local label=$1; shift
  /usr/bin/time -v "$@" >"$WORK/$label.log" 2>&1 || { tail -20 "$WORK/$label.log" >&2; exit 1; }
  python3 - "$label" "$WORK/$label.log" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
def field(name):
    m = re.search(re.escape(name) + r":\s*(.+)", text); return m.group(1).strip() if m else "?"
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)"); parts = [float(x) for x in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss = int(field("Maximum resident set size (kbytes)")) / 1024 / 1024
print(f"{sys.argv[1]:10} wall {seconds:8.1f} s   CPU {cpu:8.1f} s   peak RSS {rss:5.2f} GB")
with open(sys.argv[2] + ".summary", "w") as f: f.write(f"{seconds} {cpu} {rss}\n")
PY
}
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/out-nnseg"
  measure nnseg $PIN "$NNSEG" predict -i "$WORK/Dataset901_CTBench/imagesTs" -o "$WORK/out-nnseg" -m "$WORK/model" -f 0 --disable-tta --log-level info
  grep 'case done' "$WORK/nnseg.log" | tr ' ' '\n' | grep '_s=' | sed 's/^/  stage /' || true
  grep 'model loaded' "$WORK/nnseg.log" | tr ' ' '\n' | grep -E '^(activation|seconds)' | sed 's/^/  model /' || true
  if [[ "$BF16" == 1 ]]; then
    rm -rf "$WORK/out-bf16"
    measure nnseg-bf16 $PIN "$NNSEG" predict -i "$WORK/Dataset901_CTBench/imagesTs" -o "$WORK/out-bf16" -m "$WORK/model" -f 0 \
      --disable-tta --precision bf16 --log-level info
    grep 'case done' "$WORK/nnseg-bf16.log" | tr ' ' '\n' | grep '_s=' | sed 's/^/  stage /' || true
  fi
  if [[ -n "${REF_PYTHON:-}" ]]; then
    rm -rf "$WORK/out-ref"
    measure nnunet env nnUNet_raw="$WORK" nnUNet_preprocessed="$WORK/pre" nnUNet_results="$WORK" \
      "$(dirname "$REF_PYTHON")/nnUNetv2_predict_from_modelfolder" -i "$WORK/Dataset901_CTBench/imagesTs" -o "$WORK/out-ref" \
      -m "$WORK/model" -f 0 --disable_tta -device cpu
  fi
done
if [[ -n "${REF_PYTHON:-}" ]]; then
  "$REF_PYTHON" - "$WORK" <<'PY'
import sys, SimpleITK as sitk, numpy as np
w = sys.argv[1]
a = sitk.GetArrayFromImage(sitk.ReadImage(f"{w}/out-nnseg/ct_100.nii.gz")); b = sitk.GetArrayFromImage(sitk.ReadImage(f"{w}/out-ref/ct_100.nii.gz"))
n = [float(x) for x in open(f"{w}/nnseg.log.summary").read().split()]; r = [float(x) for x in open(f"{w}/nnunet.log.summary").read().split()]
print(f"voxel agreement {np.mean(a == b) * 100:.4f} %")
print(f"wall ratio nnU-Net / nnseg {r[0] / n[0]:.2f}x (goal >= 2)   peak RSS nnseg / nnU-Net {n[2] / r[2]:.2f} (goal <= 1)")
PY
fi
if [[ "$BF16" == 1 ]]; then
  "$PY" - "$WORK" <<'PY'
import gzip, struct, sys
import numpy as np
w = sys.argv[1]
def labels(path):
    raw = gzip.open(path).read(); dim = struct.unpack_from("<8h", raw, 40); offset = int(struct.unpack_from("<f", raw, 108)[0])
    dtype = {2: np.uint8, 4: np.int16, 512: np.uint16, 8: np.int32}[struct.unpack_from("<h", raw, 70)[0]]
    return np.frombuffer(raw, dtype=dtype, count=dim[1] * dim[2] * dim[3], offset=offset)
a, b = labels(f"{w}/out-nnseg/ct_100.nii.gz"), labels(f"{w}/out-bf16/ct_100.nii.gz")
n = [float(x) for x in open(f"{w}/nnseg.log.summary").read().split()]; h = [float(x) for x in open(f"{w}/nnseg-bf16.log.summary").read().split()]
dice = []
for l in np.unique(np.concatenate([a, b])):
    if l == 0: continue
    x, y = a == l, b == l
    dice.append((int(l), 2 * np.sum(x & y) / (np.sum(x) + np.sum(y)), int(np.sum(x))))
print(f"bf16 vs fp32: voxel agreement {np.mean(a == b) * 100:.4f} % (goal >= 99.9), worst label Dice "
      f"{min(d for _, d, _ in dice):.5f} (goal >= 0.999; label, Dice, fp32 voxels: "
      + ", ".join(f"{l} {d:.4f} {v}" for l, d, v in sorted(dice, key=lambda t: t[1])[:5]) + ")")
print(f"wall ratio fp32 / bf16 {n[0] / h[0]:.2f}x   CPU ratio {n[1] / h[1]:.2f}x   peak RSS bf16 / fp32 {h[2] / n[2]:.2f}")
PY
fi
