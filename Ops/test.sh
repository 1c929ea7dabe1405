#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs the whole test suite.
# Needs ../shared (the project's shared data) next to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
source Ops/env.sh
bash Ops/setup.sh --test
if [[ ! -d ../shared/data ]]; then
  echo "test: ../shared/data is missing; the tests read the shared datasets from there" >&2
  exit 1
fi
swift build --build-tests
bash Ops/check_layers.sh   # the module map (Ops/layers.txt) against every import
# The fuzz targets (issue #14) for a fixed, seeded budget: the same inputs every run; a crash fails CI.
FUZZ_CONFIG=debug FUZZ_RUNS=300 FUZZ_SEED=20261202 bash Ops/fuzz/run.sh all 0
swift test
# Behind a flag (installs and starts Slurm daemons): the fold array on a single-node Slurm (#21).
if [[ "${NNSEG_SLURM_TEST:-0}" == 1 ]]; then bash Ops/slurm/test_single_node.sh; fi
