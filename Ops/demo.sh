#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds nnseg (release) and runs it on the
# bundled demo series (Fixtures/demo/hippocampus-mr, a real hippocampus MR DICOM series).
set -euo pipefail
cd "$(dirname "$0")/.."
source Ops/env.sh
bash Ops/setup.sh
swift build -c release --product nnseg
BIN="$(swift build -c release --show-bin-path)/nnseg"
"$BIN" inspect Fixtures/demo/hippocampus-mr --decode
cat <<'NOTE'

The series above is what `nnseg run` will segment. Prediction (issues #3-#4), DICOM-SEG/RTSTRUCT
export (#5) and the audited case pipeline (#6) are not built yet; until then the demo stops after
reading and checking the series.
NOTE
