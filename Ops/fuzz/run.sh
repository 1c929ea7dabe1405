#!/usr/bin/env bash
# libFuzzer on nnseg's readers of untrusted bytes (issue #14).
#
#   bash Ops/fuzz/run.sh TARGET SECONDS     # FuzzDICOM, FuzzGeometry, FuzzNIfTI, FuzzCheckpoint, FuzzPlans, FuzzProfile
#   bash Ops/fuzz/run.sh all SECONDS        # every target for SECONDS each
#   FUZZ_RUNS=N FUZZ_SEED=S bash Ops/fuzz/run.sh all 0   # N executions per target from seed S: the same inputs on
#                                           # every run (CI uses this: a fuzz step must not fail by chance)
#   FUZZ_RUNS=1000000 bash Ops/fuzz/run.sh all 3600      # 10^6 executions or one hour, whichever comes first
#   FUZZ_CONFIG=debug ...                   # build unoptimised (CI: shorter build); default release (3-4x the executions)
#
# Builds the targets with -sanitize=fuzzer,address into .build-fuzz/, seeds each from Fixtures/ and
# ../shared/data (copied into a scratch corpus; the seeds are never modified), and runs libFuzzer with a
# 2 GiB RSS limit and a 10 s per-input limit (leak reports off: they come from Foundation and DCMTK caches,
# not from inputs). Exit status non-zero on a crash, a timeout or an
# out-of-memory; the crashing input is kept in Ops/fuzz/crashers/<target>/ (add it to Fixtures/fuzz/ with a
# regression test). Prints executions and coverage per target.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
TARGET="${1:?target or all}" SECONDS_EACH="${2:?seconds}"
ALL=(FuzzDICOM FuzzGeometry FuzzNIfTI FuzzCheckpoint FuzzPlans FuzzProfile)
if [[ "$TARGET" == all ]]; then targets=("${ALL[@]}"); else targets=("$TARGET"); fi
SHARED=../shared/data

seeds() {
  case "$1" in
    FuzzDICOM) ls Fixtures/demo/hippocampus-mr/1.dcm "$SHARED"/dicom-zoo/enhanced-ct-multiframe/*.dcm "$SHARED"/dicom-zoo/transfer-syntaxes-mr-slice/* \
                  "$SHARED"/dicom-zoo/seg-dcmqi-liver/*.dcm "$SHARED"/dicom-zoo/rtstruct-rtutils/rt.dcm 2>/dev/null ;;
    FuzzGeometry) ls Fixtures/fuzz/seeds/geometry-* ;;
    FuzzNIfTI) ls "$SHARED"/Dataset004_Hippocampus/imagesTr/hippocampus_001_0000.nii.gz "$SHARED"/Dataset004_Hippocampus/labelsTr/hippocampus_001.nii.gz 2>/dev/null ;;
    FuzzCheckpoint) ls Fixtures/fuzz/seeds/tiny.pth ;;
    FuzzPlans) ls Fixtures/demo/model/plans.json Fixtures/demo/model/dataset.json ;;
    FuzzProfile) ls Profiles/*.yaml ;;
  esac
}

CONFIG="${FUZZ_CONFIG:-release}"
FLAGS=(-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcc -fsanitize=fuzzer-no-link,address -Xcxx -fsanitize=fuzzer-no-link,address)
for t in "${targets[@]}"; do
  echo "fuzz: building $t" >&2
  if ! out=$(swift build -c "$CONFIG" --product "$t" --scratch-path .build-fuzz "${FLAGS[@]}" 2>&1); then
    echo "fuzz: building $t FAILED" >&2; echo "$out" | grep -E "error" | head -5 >&2; exit 2
  fi
done
status=0
for t in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  seeds "$t" | while read -r f; do cp "$f" "$corpus/"; done
  mkdir -p "Ops/fuzz/crashers/$t"
  log="$(mktemp)"
  budget=(-max_total_time="$SECONDS_EACH")
  if [[ -n "${FUZZ_RUNS:-}" ]]; then
    budget=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}")
    if [[ "$SECONDS_EACH" != 0 ]]; then budget+=(-max_total_time="$SECONDS_EACH"); fi
  fi
  if ! ASAN_OPTIONS=detect_leaks=0 .build-fuzz/"$CONFIG"/"$t" "$corpus" "${budget[@]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -detect_leaks=0 \
       -artifact_prefix="Ops/fuzz/crashers/$t/" -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $t FAILED (input kept in Ops/fuzz/crashers/$t/)" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5 >&2
    status=1
  fi
  runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+" || echo "?")
  rate=$(grep -oE "stat::average_exec_per_sec: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  rss=$(grep -oE "stat::peak_rss_mb: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
  elapsed=$(grep -oE "Done [0-9]+ runs in [0-9]+ second" "$log" | grep -oE "in [0-9]+" | grep -oE "[0-9]+" || echo "?")
  echo "fuzz: $t: $runs executions in ${elapsed} s ($rate/s), coverage $cov edges, peak RSS $rss MB"
  rm -rf "$corpus" "$log"
  rmdir "Ops/fuzz/crashers/$t" 2>/dev/null || true
done
rmdir Ops/fuzz/crashers 2>/dev/null || true
exit $status
