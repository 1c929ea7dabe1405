#!/usr/bin/env bash
# Network forward benchmark against torch (issues #3, #16). Usage: bash Ops/bench/network_forward.sh [--znver5]
#   REF_PYTHON=/tmp/ref/bin/python bash Ops/bench/network_forward.sh   # torch timed in the same run (live ratio)
# Without REF_PYTHON the ratio uses the recorded torch figures (another session; printed as such).
# Also the roofline of the 128³ network against the measured FMA peak of this CPU (Sources/CPUPeak).
# --znver5 also builds with -target-cpu znver5 (faster, not portable) into .build-znver5 and runs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
swift build -c release --product NetworkBenchmark >/dev/null
if [[ -n "${REF_PYTHON:-}" ]]; then
  TORCH_REFERENCE="$(mktemp --suffix .json)"
  echo "== torch (live, $OMP_NUM_THREADS threads)"
  "$REF_PYTHON" Ops/bench/torch_forward_reference.py > "$TORCH_REFERENCE"
  export TORCH_REFERENCE
fi
echo "== default build"
"$(swift build -c release --show-bin-path)/NetworkBenchmark" "$PWD"
if [[ "${1:-}" == "--znver5" ]]; then
  swift build -c release --product NetworkBenchmark --scratch-path .build-znver5 -Xswiftc -target-cpu -Xswiftc znver5 >/dev/null
  echo "== -target-cpu znver5"
  "$(swift build -c release --scratch-path .build-znver5 --show-bin-path)/NetworkBenchmark" "$PWD"
fi
