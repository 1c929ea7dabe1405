#!/usr/bin/env bash
# `nnseg plan` + `nnseg preprocess -c 3d_fullres` on the Hippocampus raw dataset (260 cases), timed
# against the reference `nnUNetv2_plan_and_preprocess -d 4 -c 3d_fullres -np 2 --verify_dataset_integrity`
# (35.1 s wall on this machine class, shared/reference/README.md). Prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
SHARED="${NNSEG_SHARED:-$(cd .. && pwd)/shared}"
REFERENCE_SECONDS=35.1
swift build -c release --product nnseg >/dev/null
BIN="$(swift build -c release --show-bin-path)/nnseg"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
start=$(date +%s.%N)
"$BIN" plan -d "$SHARED/data/Dataset004_Hippocampus" --output "$OUT" --log-level warning >/dev/null
mid=$(date +%s.%N)
"$BIN" preprocess -d "$SHARED/data/Dataset004_Hippocampus" --output "$OUT" -c 3d_fullres --workers 2 --log-level warning >/dev/null
end=$(date +%s.%N)
python3 - "$start" "$mid" "$end" "$REFERENCE_SECONDS" <<'PY'
import sys
s, m, e, ref = map(float, sys.argv[1:])
total = e - s
print(f"plan (integrity + fingerprint + planning): {m - s:.1f} s")
print(f"preprocess 3d_fullres (2 workers):          {e - m:.1f} s")
print(f"total {total:.1f} s vs reference nnUNetv2_plan_and_preprocess {ref:.1f} s -> speed-up {ref / total:.2f}x")
PY
