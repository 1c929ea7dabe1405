#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds nnseg (release) and runs the audited
# clinical job on the bundled demo: a real hippocampus MR DICOM series in, DICOM-SEG + RTSTRUCT + NIfTI +
# QA montage out, one case recorded in the default embedded SQLite audit log (./nnseg-audit.sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
source Ops/env.sh
bash Ops/setup.sh
swift build -c release --product nnseg
BIN="$(swift build -c release --show-bin-path)/nnseg"
"$BIN" run --profile Profiles/hippocampus-demo.yaml Fixtures/demo/hippocampus-mr -o out/demo
"$BIN" audit verify --database nnseg-audit.sqlite
"$BIN" audit list --database nnseg-audit.sqlite --limit 5
