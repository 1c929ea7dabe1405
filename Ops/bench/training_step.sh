#!/usr/bin/env bash
# Training-step benchmark against the reference nnU-Net's 6.3 s/iteration (issue #9).
# Usage: bash Ops/bench/training_step.sh [--znver5] — --znver5 also runs a -target-cpu znver5 build.
# LOADER_DATA=<preprocessed>/<dataset>/nnUNetPlans_3d_fullres also times the data loader (augmented batches).
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
swift build -c release --product TrainingBenchmark >/dev/null
for precision in fp32 bf16; do
  echo "== default build, $precision"
  "$(swift build -c release --show-bin-path)/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" "$precision"
done
if [[ "${1:-}" == "--znver5" ]]; then
  swift build -c release --product TrainingBenchmark --scratch-path .build-znver5 -Xswiftc -target-cpu -Xswiftc znver5 >/dev/null
  for precision in fp32 bf16; do
    echo "== -target-cpu znver5, $precision"
    "$(swift build -c release --scratch-path .build-znver5 --show-bin-path)/TrainingBenchmark" "$PWD" "${ITERATIONS:-5}" "$precision"
  done
fi
