#!/usr/bin/env bash
# Network forward benchmark against torch (issue #3). Usage: bash Ops/bench/network_forward.sh [--znver5]
# --znver5 also builds with -target-cpu znver5 (faster, not portable) into .build-znver5 and runs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
swift build -c release --product NetworkBenchmark >/dev/null
echo "== default build"
"$(swift build -c release --show-bin-path)/NetworkBenchmark" "$PWD"
if [[ "${1:-}" == "--znver5" ]]; then
  swift build -c release --product NetworkBenchmark --scratch-path .build-znver5 -Xswiftc -target-cpu -Xswiftc znver5 >/dev/null
  echo "== -target-cpu znver5"
  "$(swift build -c release --scratch-path .build-znver5 --show-bin-path)/NetworkBenchmark" "$PWD"
fi
