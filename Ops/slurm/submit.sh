#!/usr/bin/env bash
# Cross-validation on a Slurm cluster (#21): one job array per configuration (array task = fold, Ops/slurm/train_folds.sbatch),
# then find-best-configuration once every fold succeeded (Ops/slurm/after_folds.sbatch, --dependency=afterok).
#
#   NNSEG=/opt/nnseg/bin/nnseg DATASET=/data/nnUNet_raw/Dataset004_Hippocampus PREPROCESSED=/data/nnseg-preprocessed \
#   RESULTS=/data/nnseg-results [CONFIGURATIONS="2d 3d_fullres"] [FOLDS="0 1 2 3 4"] [CPUS=8] [TRAIN_ARGS="…"] \
#   [SBATCH_ARGS="--partition=cpu --time=48:00:00"] bash Ops/slurm/submit.sh
#
# Plan and preprocess first (once, on any node: `nnseg plan` / `nnseg preprocess`); every node must see the same
# folders. Prints the job IDs: the arrays, then the selection job.
set -euo pipefail
cd "$(dirname "$0")"
: "${NNSEG:?}" "${DATASET:?}" "${PREPROCESSED:?}" "${RESULTS:?}"
CONFIGURATIONS=${CONFIGURATIONS:-3d_fullres}
FOLDS=${FOLDS:-0 1 2 3 4}
CPUS=${CPUS:-2}
export NNSEG DATASET PREPROCESSED RESULTS TRAIN_ARGS="${TRAIN_ARGS:-}" CONFIGURATIONS FOLDS
array_spec=$(echo "$FOLDS" | tr ' ' ',')
arrays=()
for configuration in $CONFIGURATIONS; do
  # shellcheck disable=SC2086
  id=$(CONFIGURATION=$configuration sbatch --parsable --export=ALL --array="$array_spec" --cpus-per-task="$CPUS" \
       --chdir="$RESULTS" ${SBATCH_ARGS:-} train_folds.sbatch)
  arrays+=("${id%%;*}")
  echo "training $configuration: job array ${id%%;*} (folds $FOLDS)"
done
dependency=afterok:$(IFS=:; echo "${arrays[*]}")
# shellcheck disable=SC2086
select=$(sbatch --parsable --export=ALL --dependency="$dependency" --kill-on-invalid-dep=yes --cpus-per-task="$CPUS" \
         --chdir="$RESULTS" ${SBATCH_ARGS:-} after_folds.sbatch)
echo "selection: job ${select%%;*} (after $dependency)"
