#!/usr/bin/env bash
# Whole-body memory check (issue #16): a 333×333×400 CT at 1.5 mm (the example CT upsampled ×2 and padded with
# air to that size; no resampling, so the model's grid is the image's) predicted by the CT benchmark's 3d_fullres
# plans with 105 classes (seeded random weights), no mirroring. Prints /usr/bin/time -v wall, CPU and peak RSS,
# the activation arena, the stage times, and whether the peak stays within the 16 GB the issue allows.
#
#   WORK=/tmp/ct bash Ops/bench/ct_fullres.sh        # first: the plans (any run of it, CROP too)
#   WORK=/tmp/ct bash Ops/bench/ct_wholebody_memory.sh
#   STEP=1 …                                          # tile step 1.0 (36 tiles instead of 150: same buffers, ¼ the time)
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
WORK="${WORK:?WORK= the folder of an Ops/bench/ct_fullres.sh run}" STEP="${STEP:-0.5}" CLASSES="${CLASSES:-105}"
PY="$PWD/.venv-validate/bin/python"
PLANS=$(ls "$WORK"/pre/Dataset901_CTBench/*Plans*.json | head -1)
swift build -c release --product nnseg >/dev/null
NNSEG="$PWD/.build/release/nnseg"
mkdir -p "$WORK/wholebody/in"
"$PY" - "$WORK/wholebody" "$CLASSES" <<'PY'
import gzip, json, struct, sys
import numpy as np
out, classes = sys.argv[1], int(sys.argv[2])
raw = gzip.open("../shared/data/totalseg-example/example_ct.nii.gz").read()
dim = struct.unpack_from("<8h", raw, 40); offset = int(struct.unpack_from("<f", raw, 108)[0])
ct = np.frombuffer(raw, dtype=np.int16, count=dim[1] * dim[2] * dim[3], offset=offset).reshape(dim[3], dim[2], dim[1])
fine = np.clip(ct, -1024, 3071).repeat(2, 0).repeat(2, 1).repeat(2, 2)[:400, :333, :333]
body = np.full((400, 333, 333), -1024, np.int16)
body[:fine.shape[0], :fine.shape[1], :fine.shape[2]] = fine
z, y, x = body.shape
h = bytearray(352)
struct.pack_into("<i", h, 0, 348); struct.pack_into("<8h", h, 40, 3, x, y, z, 1, 1, 1, 1)
struct.pack_into("<hh", h, 70, 4, 16); struct.pack_into("<8f", h, 76, 1, 1.5, 1.5, 1.5, 0, 0, 0, 0)
struct.pack_into("<f", h, 108, 352); struct.pack_into("<ff", h, 112, 1, 0); struct.pack_into("<B", h, 123, 10)
struct.pack_into("<hh", h, 252, 0, 1)
for i, row in enumerate([(1.5, 0, 0, 0), (0, 1.5, 0, 0), (0, 0, 1.5, 0)]): struct.pack_into("<4f", h, 280 + 16 * i, *row)
h[344:348] = b"n+1\0"
with gzip.open(f"{out}/in/body_000_0000.nii.gz", "wb", compresslevel=1) as f: f.write(bytes(h) + body.tobytes())
labels = {"background": 0, **{f"structure_{i:03d}": i for i in range(1, classes)}}
json.dump({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz"}, open(f"{out}/dataset.json", "w"))
print(f"whole-body input {body.shape} (z, y, x) at 1.5 mm, {classes} classes")
PY
rm -rf "$WORK/wholebody/model" "$WORK/wholebody/out"
"$NNSEG" init-model --plans "$PLANS" --dataset-json "$WORK/wholebody/dataset.json" -c 3d_fullres --seed 1 -o "$WORK/wholebody/model"
/usr/bin/time -v "$NNSEG" predict -i "$WORK/wholebody/in" -o "$WORK/wholebody/out" -m "$WORK/wholebody/model" -f 0 --disable-tta \
  --step-size "$STEP" --log-level info >"$WORK/wholebody/predict.log" 2>&1 || { tail -20 "$WORK/wholebody/predict.log" >&2; exit 1; }
python3 - "$WORK/wholebody/predict.log" "$STEP" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def field(name):
    m = re.search(re.escape(name) + r":\s*(.+)", text); return m.group(1).strip() if m else "?"
wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"))))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss = int(field("Maximum resident set size (kbytes)")) / 1024 / 1024
print(f"whole body, step {sys.argv[2]}: wall {wall:.1f} s   CPU {cpu:.1f} s   peak RSS {rss:.2f} GB   (limit 16 GB: {'within' if rss <= 16 else 'EXCEEDED'})")
for key in re.findall(r"\b(activation_\w+=\S+|\w+_s=\S+)", text): print("  ", key)
PY
