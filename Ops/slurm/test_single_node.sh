#!/usr/bin/env bash
# The fold array on a real, single-node Slurm (#21), behind a flag (not in CI: it installs and starts daemons):
#
#   bash Ops/slurm/test_single_node.sh            # or NNSEG_SLURM_TEST=1 bash Ops/test.sh
#
# Installs slurm-wlm and munge if missing (apt), starts munged, slurmctld and slurmd for this machine only with a
# private configuration on loopback ports in a temporary folder, plans and preprocesses 12 real Hippocampus cases,
# submits Ops/slurm/submit.sh (5 folds of 3d_fullres, 2 iterations each, then find-best-configuration), waits for
# the jobs' end states, checks every fold's checkpoint and validation, the merged cross-validation, postprocessing and
# inference_information.json, then stops the daemons and removes the folder. Exit status 0 only if all of it holds.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[[ $(id -u) == 0 ]] || { echo "test_single_node: needs root (daemons, apt)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
source Ops/env.sh
swift build --product nnseg >/dev/null
NNSEG="$(swift build --show-bin-path)/nnseg"
DIR=$(mktemp -d /tmp/nnseg-slurm.XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] || rm -rf "$DIR"
}
trap cleanup EXIT

# munge with its own key and socket.
dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
chmod 600 "$DIR/munge.key"
mkdir -p "$DIR/munge"
munged -F -f --key-file="$DIR/munge.key" --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
  --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" > "$DIR/munge/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -S "$DIR/munge/munge.socket" ]] && break; sleep 0.1; done

HOST=$(hostname -s)
CPUS=$(nproc)
mkdir -p "$DIR/state" "$DIR/spool"
cat > "$DIR/slurm.conf" <<EOF
ClusterName=nnseg-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -D -c -f "$SLURM_CONF" > "$DIR/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" > "$DIR/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
  [[ "$state" == idle* ]] && break
  sleep 0.2
done
echo "slurm: node $HOST is ${state:-not up}"
[[ "$state" == idle* ]] || { tail -20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2; exit 1; }

# A small real dataset, planned and preprocessed once.
RAW="$DIR/raw/Dataset004_Hippocampus"
mkdir -p "$RAW/imagesTr" "$RAW/labelsTr"
for n in 1 3 4 6 7 8 11 14 15 17 19 20; do
  id=$(printf "hippocampus_%03d" "$n")
  cp "../shared/data/Dataset004_Hippocampus/imagesTr/${id}_0000.nii.gz" "$RAW/imagesTr/"
  cp "../shared/data/Dataset004_Hippocampus/labelsTr/$id.nii.gz" "$RAW/labelsTr/"
done
python3 - "../shared/data/Dataset004_Hippocampus/dataset.json" "$RAW/dataset.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["numTraining"] = 12; json.dump(d, open(sys.argv[2], "w"))
PY
"$NNSEG" plan -d "$RAW" --output "$DIR/pre" --log-level warning
"$NNSEG" preprocess -d "$RAW" --output "$DIR/pre" -c 3d_fullres --log-level warning
mkdir -p "$DIR/results"

jobs=$(NNSEG="$NNSEG" DATASET="$RAW" PREPROCESSED="$DIR/pre" RESULTS="$DIR/results" CONFIGURATIONS=3d_fullres CPUS=1 \
       TRAIN_ARGS="--epochs 1 --iterations 2 --validation-iterations 1 --seed 3 --log-level warning" bash Ops/slurm/submit.sh)
echo "$jobs"
array=$(echo "$jobs" | sed -n 's/.*job array \([0-9]*\).*/\1/p')
select=$(echo "$jobs" | sed -n 's/^selection: job \([0-9]*\).*/\1/p')
# Wait for the selection job to reach an end state (it ends after every fold, or is cancelled if one fails).
final=""
for _ in $(seq 3000); do
  final=$(scontrol show job "$select" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  [[ "$final" =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]] && break
  sleep 1
done
status=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; status=1; fi; }
for task in 0 1 2 3 4; do
  state=$(scontrol show job "${array}_$task" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1)
  check "fold $task's array task ${array}_$task completed ($state)" '[[ "$state" == COMPLETED ]]'
done
check "selection job $select completed ($final)" '[[ "$final" == COMPLETED ]]'
MODEL="$DIR/results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres"
for f in 0 1 2 3 4; do
  check "fold $f: checkpoint_final.pth, validation summary and probabilities" \
    "[[ -f '$MODEL/fold_$f/checkpoint_final.pth' && -f '$MODEL/fold_$f/validation/summary.json' ]] && ls '$MODEL/fold_$f/validation/'*.npz >/dev/null 2>&1"
done
check "merged cross-validation of 12 cases" \
  "python3 -c \"import json,sys; s=json.load(open('$MODEL/crossval_results_folds_0_1_2_3_4/summary.json')); sys.exit(len(s['metric_per_case']) != 12)\""
check "postprocessing determined" "[[ -f '$MODEL/crossval_results_folds_0_1_2_3_4/postprocessing.json' ]]"
check "inference_information.json chooses 3d_fullres" \
  "python3 -c \"import json,sys; i=json.load(open('$DIR/results/Dataset004_Hippocampus/inference_information.json')); sys.exit(i['best_model_or_ensemble']['selected_model_or_models'][0]['configuration'] != '3d_fullres')\""
if [[ $status != 0 ]]; then
  echo "--- job logs ($DIR/results):"; tail -5 "$DIR"/results/nnseg-*.log 2>/dev/null || true
  tail -20 "$DIR/slurmctld.log" 2>/dev/null || true
fi
exit $status
