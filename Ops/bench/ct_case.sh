#!/usr/bin/env bash
# A 25+-structure CT case end to end (issue #24): how long writing the outputs takes and how big they are.
#
#   bash Ops/bench/ct_case.sh                       # part 1: export of a noisy label map
#   WORK=/tmp/ct bash Ops/bench/ct_case.sh          # … and part 2 when WORK holds an Ops/bench/ct_fullres.sh run
#   KEEP_ALL=1 …                                    # part 1 also with the island/hole filter off (today's contours)
#   KEEP_RUN=/tmp/ctrun …                           # keep part 2's outputs (labels.nii.gz: re-export without inference)
#
# Part 1: TotalSegmentator's example CT series (512×512×20, anonymised: --repair-missing-uids) with its own label
# map made noisy — 2 % of the voxels set to a random present label (seeded) — through `nnseg export` (SEG +
# RTSTRUCT): per-output seconds, file sizes, contours and points.
# Part 2: `nnseg run` on that series with the CT benchmark's seeded random-weight 3d_fullres model (26 classes)
# and a profile from `nnseg profile init`: the case's stage_timings from the audit log and the share of writing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source Ops/env.sh
PY="$ROOT/.venv-validate/bin/python"
[[ -x "$PY" ]] || { echo "ct_case: run bash Ops/setup.sh --test first" >&2; exit 2; }
swift build -c release --product nnseg >/dev/null
NNSEG="$ROOT/.build/release/nnseg"
SERIES=../shared/data/totalseg-example/example_ct_dicom
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

"$PY" - "$OUT/noisy.nii.gz" <<'PY'
import gzip, struct, sys
import numpy as np
raw = gzip.open("../shared/data/totalseg-example/example_seg_dicom.nii.gz").read()
offset = int(struct.unpack_from("<f", raw, 108)[0]); datatype = struct.unpack_from("<h", raw, 70)[0]
dim = struct.unpack_from("<8h", raw, 40); n = dim[1] * dim[2] * dim[3]
dtype = {2: np.uint8, 4: np.int16, 512: np.uint16, 8: np.int32}[datatype]
labels = np.frombuffer(raw, dtype=dtype, count=n, offset=offset).copy()
rng = np.random.default_rng(24)
present = np.unique(labels[labels > 0])
noisy = rng.random(n) < 0.02
labels[noisy] = rng.choice(present, size=int(noisy.sum()))
with gzip.open(sys.argv[1], "wb", compresslevel=1) as f: f.write(raw[:offset] + labels.astype(dtype).tobytes())
print(f"noisy label map: {int(noisy.sum())} of {n} voxels set to one of {len(present)} labels (seed 24)")
PY

describe() {  # file → size, contours, points
  python3 - "$1" <<'PY'
import os, subprocess, sys
f = sys.argv[1]; size = os.path.getsize(f) / 1e6
dump = subprocess.run(["dcmdump", "+P", "3006,0046", f], capture_output=True, text=True).stdout.split("\n")
points = sum(int(l.split("[")[1].split("]")[0]) for l in dump if l.startswith("(3006,0046)"))
contours = sum(1 for l in dump if l.startswith("(3006,0046)"))
print(f"{os.path.basename(f):14} {size:8.2f} MB" + (f"   {contours} contours, {points} points" if contours else ""))
PY
}
export_case() {  # label, extra export args…
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  "$NNSEG" export --labels "$OUT/noisy.nii.gz" --reference "$SERIES" --repair-missing-uids --seg "$OUT/$label-seg.dcm" \
    --rtstruct "$OUT/$label-rt.dcm" --label-names ../shared/data/totalseg-example/example_seg_labels.json --log-level info "$@" \
    >"$OUT/$label.log" 2>&1 || { cat "$OUT/$label.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "export ($label): $(python3 -c "print(f'{$end - $start:.2f}')") s wall; $(grep 'export done' "$OUT/$label.log" | grep -oE '(seg|rtstruct)_s=[0-9.]+' | tr '\n' ' ')"
  describe "$OUT/$label-seg.dcm"; describe "$OUT/$label-rt.dcm"
}
export_case default
if [[ -n "${KEEP_ALL:-}" ]]; then export_case keep-all --min-island-mm3 0 --fill-holes-mm3 0; fi

if [[ -n "${WORK:-}" && -d "${WORK}/model" ]]; then
  "$NNSEG" profile init --model "$WORK/model" --output "$OUT/profile.yaml" >/dev/null
  sed -i 's/repairMissingUIDs: false/repairMissingUIDs: true/; s/mirroring: true/mirroring: false/; s/minimumSlices: 10/minimumSlices: 5/' "$OUT/profile.yaml"
  "$NNSEG" keys init --pseudonym-key "$OUT/keys/pseudonym.key" --signing-key "$OUT/keys/signing.key" >/dev/null
  export NNSEG_PSEUDONYM_KEY="$OUT/keys/pseudonym.key" NNSEG_SIGNING_KEY="$OUT/keys/signing.key"
  start=$(date +%s.%N)
  "$NNSEG" run --profile "$OUT/profile.yaml" "$SERIES" -o "$OUT/run" --audit-db "$OUT/audit.sqlite" --log-level error >/dev/null
  if [[ -n "${KEEP_RUN:-}" ]]; then mkdir -p "$KEEP_RUN" && cp -r "$OUT/run" "$OUT/profile.yaml" "$KEEP_RUN/"; fi
  end=$(date +%s.%N)
  echo "run: $(python3 -c "print(f'{$end - $start:.1f}')") s wall"
  sqlite3 "$OUT/audit.sqlite" "SELECT payload FROM events WHERE kind = 'stage_timings'" | python3 -c "
import json, sys
t = json.loads(sys.stdin.read())
# 'network' is the share of 'sliding_window' spent in the network, and write_* the parts of 'write': not counted twice.
total = sum(v for k, v in t.items() if not k.startswith('write_') and k != 'network')
print('  ' + '  '.join(f'{k} {v:.2f}' for k, v in t.items()))
print(f'  writing {t.get(\"write\", 0):.2f} s of {total:.2f} s staged = {100 * t.get(\"write\", 0) / total:.1f} % (goal <= 10 %)')"
  for f in "$OUT"/run/*/*; do describe "$f"; done
fi
