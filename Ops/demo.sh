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
# The site's keys (#18), made once and kept outside the database and the repository: patient IDs are
# pseudonymised with the first, every closed case is signed with the second; receipts go beside each case's
# outputs and, one line per case, into the anchor file.
if [[ ! -f keys/pseudonym.key ]]; then "$BIN" keys init --pseudonym-key keys/pseudonym.key; fi
if [[ ! -f keys/audit-signing.key ]]; then "$BIN" keys init --signing-key keys/audit-signing.key; fi
export NNSEG_PSEUDONYM_KEY=keys/pseudonym.key NNSEG_SIGNING_KEY=keys/audit-signing.key NNSEG_AUDIT_ANCHOR=nnseg-audit-anchor.jsonl
"$BIN" run --profile Profiles/hippocampus-demo.yaml Fixtures/demo/hippocampus-mr -o out/demo
"$BIN" audit verify --database nnseg-audit.sqlite --public-key keys/audit-signing.key.pub --receipts out/demo --anchor nnseg-audit-anchor.jsonl
"$BIN" audit list --database nnseg-audit.sqlite --limit 5
