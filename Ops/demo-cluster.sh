#!/usr/bin/env bash
# The cluster demo (issue #19): a private PostgreSQL cluster on a loopback port in a temporary folder, two
# intake+worker nodes (`nnseg watch --shared`) and one compute-only node (`nnseg worker`) sharing its queue and
# audit log, SERIES copies of the demo MR series (each with its own Study/Series/SOP Instance UIDs) delivered to
# the two intakes, and KILLS SIGKILLs of a node while it runs a case (restarted a second later, as systemd's
# Restart= would). Exits 0 only if every series finished exactly once (one case row, one job done, one complete
# output folder, no partial output, nothing quarantined or left in a spool), every killed case was taken over by
# a node after its lease ran out, and `nnseg audit verify` passes. Stops everything it started.
#
#   bash Ops/demo-cluster.sh                       # 20 series, 2 kills (the README's demo, run by the tests)
#   SERIES=30 KILLS=random SEED=7 bash Ops/demo-cluster.sh   # 30 series, 2–4 kills at random moments and nodes
#   WORKERS_ONLY=1 SERIES=12 KILLS=0 bash Ops/demo-cluster.sh # throughput: one node only (1, 2 or 3 nodes)
#
# Environment: NNSEG (binary; default: built here, debug), LEASE (s, default 6), KEEP=1 keeps the folder,
# DB_OUTAGE=S stops the database for S seconds after the kills (nodes must ride it out).
# Prints one line per kill with the failover time (kill → job_taken_over in the audit log) and a summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source Ops/env.sh
NNSEG="${NNSEG:-}"
if [[ -z "$NNSEG" ]]; then swift build --product nnseg >/dev/null; NNSEG="$ROOT/.build/debug/nnseg"; fi
SERIES=${SERIES:-20}
KILLS=${KILLS:-2}
SEED=${SEED:-20261203}
LEASE=${LEASE:-6}
NODES=${NODES:-3}          # 1: node-a only; 2: node-a + node-b; 3: + the compute-only node-c
for tool in dcmodify psql python3 runuser; do
  command -v "$tool" >/dev/null || { echo "demo-cluster: $tool is missing (bash Ops/setup.sh --test)" >&2; exit 2; }
done
echo "demo-cluster: seed $SEED, $SERIES series, kills: $KILLS, lease ${LEASE} s, $NODES node(s)"
RANDOM=$SEED

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
DIR="$(mktemp -d /tmp/nnseg-cluster.XXXXXX)"
chmod 755 "$DIR"
declare -A pid_of=()
cleanup() {
  local rc=$?
  for p in "${pid_of[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0; for p in "${pid_of[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break; sleep 0.2
  done
  for p in "${pid_of[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  bash Ops/pg.sh stop "$DIR/pg" || true
  if [[ $rc != 0 ]]; then
    for log in "$DIR"/node-*.log; do [[ -f $log ]] && { echo "--- $(basename "$log") (last lines)" >&2; tail -15 "$log" >&2; }; done
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then echo "demo-cluster: kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
for sig in INT TERM HUP; do trap "echo 'demo-cluster: interrupted by SIG$sig' >&2; exit 3" "$sig"; done

# The shared state: PostgreSQL (queue + audit log) and one shared folder (spool, outgoing, quarantine, held).
URL=$(bash Ops/pg.sh start "$DIR/pg" "$(free_port)")
SHARED="$DIR/shared"
mkdir -p "$SHARED" "$DIR/in-a" "$DIR/in-b" "$DIR/staging"
sed -e "s#../Fixtures/demo/model#$ROOT/Fixtures/demo/model#" -e "s/mirroring: true/mirroring: false/" \
  Profiles/hippocampus-demo.yaml > "$DIR/profile.yaml"
if [[ -z "${NNSEG_PSEUDONYM_KEY:-}" ]]; then
  "$NNSEG" keys init --pseudonym-key "$DIR/keys/pseudonym.key" --signing-key "$DIR/keys/audit-signing.key" >/dev/null
  export NNSEG_PSEUDONYM_KEY="$DIR/keys/pseudonym.key" NNSEG_SIGNING_KEY="$DIR/keys/audit-signing.key"
fi

COMMON=(--profile "$DIR/profile.yaml" --database "$URL" --shared "$SHARED" --lease "$LEASE" --log-level info)
start_node() {  # name
  local name=$1
  case $name in
    node-a|node-b)
      "$NNSEG" watch "${COMMON[@]}" --node "$name" --incoming "$DIR/in-${name#node-}" --outgoing "$DIR/unused" \
        --quiet-period 1 --poll-interval 0.2 >>"$DIR/$name.log" 2>&1 & ;;
    node-c)
      "$NNSEG" worker "${COMMON[@]}" --node "$name" --poll-interval 0.2 >>"$DIR/$name.log" 2>&1 & ;;
  esac
  pid_of[$name]=$!
}
NAMES=(node-a node-b node-c)
NAMES=("${NAMES[@]:0:$NODES}")
for n in "${NAMES[@]}"; do start_node "$n"; done

# SERIES copies of the demo series, each a new study/series (new SOP Instance UIDs too), made in a staging folder
# and moved into an intake's folder in one rename (a router delivers file by file; the quiet period covers that).
new_uid() { python3 -c 'import uuid; print("2.25." + str(uuid.uuid4().int))'; }
declare -a SERIES_UIDS=()
for i in $(seq 1 "$SERIES"); do
  dest="$DIR/staging/series-$i"; mkdir -p "$dest"
  cp Fixtures/demo/hippocampus-mr/*.dcm "$dest/"
  series_uid=$(new_uid)
  dcmodify -nb -q -m "(0020,000d)=$(new_uid)" -m "(0020,000e)=$series_uid" -gin "$dest"/*.dcm
  SERIES_UIDS+=("$series_uid")
done
START=$(date +%s.%N)
for i in $(seq 1 "$SERIES"); do
  if [[ $NODES -ge 2 && $((i % 2)) == 0 ]]; then target="$DIR/in-b"; else target="$DIR/in-a"; fi
  mv "$DIR/staging/series-$i" "$target/series-$i"
done
echo "demo-cluster: PostgreSQL at $URL; ${#NAMES[@]} node(s) started; $SERIES series delivered"

sql() { psql "$URL" -qAtc "$1"; }
done_jobs() { sql "SELECT count(*) FROM jobs WHERE state IN ('done', 'failed')" 2>/dev/null || echo 0; }

# What an operator sees while cases run: nodes, queue depth, leases (`nnseg status --database`).
STATUS_SEEN=0
for _ in $(seq 1 300); do
  if "$NNSEG" status --database "$URL" >"$DIR/status-running.txt" 2>&1 && grep -q " on node-.*attempt 1, [0-9]* s left" "$DIR/status-running.txt"; then
    STATUS_SEEN=1; break
  fi
  sleep 0.2
done

# Kills: a node (chosen in turn, or at random) while one of its case workers runs, then restarted.
if [[ $KILLS == random ]]; then KILLS=$((2 + RANDOM % 3)); RANDOM_KILLS=1; else RANDOM_KILLS=0; fi
declare -a KILLED_CASES=() KILL_TIMES=() KILLED_NODES=()
KILLS_DONE=0
for k in $(seq 1 "$KILLS"); do
  # Wait a random moment (random mode) or for the next case, then pick a node that is running a case now.
  if [[ $RANDOM_KILLS == 1 ]]; then sleep "$(python3 -c "import random; random.seed($SEED + $k); print(round(random.uniform(0.5, 4), 2))")"; fi
  victim=""; case_id=""
  # Random mode: one kill in three hits a node whatever it is doing (claiming, queueing, settling, idle).
  if [[ $RANDOM_KILLS == 1 && $((RANDOM % 3)) == 0 ]]; then victim=${NAMES[$((RANDOM % ${#NAMES[@]}))]}; fi
  for _ in $(seq 1 600); do
    [[ -n $victim ]] && break
    if [[ $RANDOM_KILLS == 1 ]]; then order=$(printf '%s\n' "${NAMES[@]}" | python3 -c "import random,sys; random.seed($SEED * 31 + $k); l=sys.stdin.read().split(); random.shuffle(l); print(' '.join(l))")
    else order="${NAMES[$(( (k + ${#NAMES[@]} - 1) % ${#NAMES[@]} ))]} ${NAMES[*]}"; fi
    for n in $order; do
      child=$(pgrep -P "${pid_of[$n]}" -f "watch-worker" | head -1 || true)
      if [[ -n $child ]]; then
        case_id=$(tr '\0' '\n' < "/proc/$child/cmdline" 2>/dev/null | sed -n '/^--case-id$/{n;p}' || true)
        [[ -n $case_id ]] && { victim=$n; break; }
      fi
    done
    [[ -n $victim ]] && break
    [[ $(done_jobs) -ge $SERIES ]] && break
    sleep 0.1
  done
  if [[ -z $victim ]]; then echo "demo-cluster: no case running to interrupt for kill $k (all done)"; break; fi
  kill -KILL "${pid_of[$victim]}"
  if [[ -n $case_id ]]; then KILL_TIMES+=("$(date +%s.%N)"); KILLED_CASES+=("$case_id"); KILLED_NODES+=("$victim"); fi
  wait "${pid_of[$victim]}" 2>/dev/null || true
  echo "demo-cluster: SIGKILL $victim (pid ${pid_of[$victim]}) $([[ -n $case_id ]] && echo "while it ran case $case_id" || echo "at a random moment"); restarting it"
  KILLS_DONE=$((KILLS_DONE + 1))
  sleep 1
  start_node "$victim"
done

# DB_OUTAGE=S: the database is stopped for S seconds while cases run (nodes retry with backoff; nothing may be
# lost or run twice), then started again on the same port.
if [[ "${DB_OUTAGE:-0}" != 0 ]]; then
  port=${URL##*:}; port=${port%%/*}
  echo "demo-cluster: stopping PostgreSQL for ${DB_OUTAGE} s ($(done_jobs) of $SERIES jobs closed)"
  bash Ops/pg.sh stop "$DIR/pg"
  sleep "$DB_OUTAGE"
  bash Ops/pg.sh start "$DIR/pg" "$port" >/dev/null
  echo "demo-cluster: PostgreSQL back"
fi

# Wait for every job to be closed (a failover takes the lease plus a poll).
for _ in $(seq 1 $((SERIES * 60 + 600))); do
  [[ $(done_jobs) -ge $SERIES ]] && break
  for n in "${NAMES[@]}"; do
    kill -0 "${pid_of[$n]}" 2>/dev/null || { echo "demo-cluster: FAILED: $n exited on its own" >&2; exit 1; }
  done
  sleep 0.2
done
END=$(date +%s.%N)

# Exactly once: the database, the shared folder and the audit chain.
problems=()
jobs=$(sql "SELECT count(*) FROM jobs")
[[ $jobs == "$SERIES" ]] || problems+=("$jobs jobs for $SERIES series")
notdone=$(sql "SELECT count(*) FROM jobs WHERE state <> 'done'")
[[ $notdone == 0 ]] || problems+=("$notdone job(s) not done: $(sql "SELECT id || ' ' || state || ' ' || coalesce(outcome, '') FROM jobs WHERE state <> 'done'" | tr '\n' ';')")
cases=$(sql "SELECT count(*) FROM cases")
succeeded=$(sql "SELECT count(*) FROM cases WHERE status = 'SUCCEEDED'")
[[ $cases == "$SERIES" && $succeeded == "$SERIES" ]] || problems+=("$cases case rows, $succeeded succeeded, for $SERIES series")
for uid in "${SERIES_UIDS[@]}"; do
  n=$(sql "SELECT count(*) FROM cases WHERE series_uid = '$uid'")
  [[ $n == 1 ]] || problems+=("series $uid has $n case rows")
done
outputs=$(find "$SHARED/outgoing" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
partial=$(find "$SHARED/outgoing" -mindepth 1 -maxdepth 1 -name '.*' | wc -l)
[[ $outputs == "$SERIES" ]] || problems+=("$outputs output folders for $SERIES series")
[[ $partial == 0 ]] || problems+=("$partial partial output folder(s) left")
for folder in "$SHARED"/outgoing/*/; do
  for f in seg.dcm rtstruct.dcm labels.nii.gz receipt.json; do
    [[ -s "$folder/$f" ]] || problems+=("$(basename "$folder"): $f missing")
  done
done
left=$(find "$SHARED/spool" -mindepth 2 -maxdepth 2 2>/dev/null | wc -l)
[[ $left == 0 ]] || problems+=("$left series left in the spool")
quarantined=$(find "$SHARED/quarantine" -mindepth 1 -maxdepth 1 | wc -l)
[[ $quarantined == 0 ]] || problems+=("$quarantined quarantined")
for i in "${!KILLED_CASES[@]}"; do
  c=${KILLED_CASES[$i]}
  # The first take-over of the case after this kill (a case can be killed twice).
  taken=$(sql "SELECT recorded_at || ' ' || (payload::json->>'node') FROM events WHERE case_id = '$c' AND kind = 'job_taken_over' ORDER BY id" \
    | python3 -c "
import datetime, sys
kill = float(sys.argv[1])
for line in sys.stdin:
    when, node = line.split()
    t = datetime.datetime.fromisoformat(when.replace('Z', '+00:00')).timestamp()
    if t >= kill - 1:
        print(f'{t - kill:.1f} {node}'); break" "${KILL_TIMES[$i]}")
  recorded=$(sql "SELECT count(*) FROM events WHERE case_id = '$c' AND kind = 'case_recovered'")
  if [[ -z $taken ]]; then problems+=("killed case $c was never taken over after kill $((i + 1))"); continue; fi
  failover=${taken%% *}; by=${taken#* }
  echo "demo-cluster: kill $((i + 1)): ${KILLED_NODES[$i]} ran $c; taken over by $by after ${failover} s (lease $LEASE s)$([[ $recorded != 0 ]] && echo ', outputs were complete: recovered')"
done
[[ $STATUS_SEEN == 1 ]] || problems+=("nnseg status never showed a lease while cases ran: $(tr '\n' ' ' < "$DIR/status-running.txt")")
"$NNSEG" status --database "$URL" >"$DIR/status-end.txt" 2>&1 || problems+=("nnseg status failed: $(tail -2 "$DIR/status-end.txt")")
grep -q "queue     queued 0 · running 0 (lease run out: 0) · done $SERIES · failed 0" "$DIR/status-end.txt" \
  || problems+=("nnseg status at the end: $(sed -n 2p "$DIR/status-end.txt")")
for n in "${NAMES[@]}"; do grep -q "^  $n (" "$DIR/status-end.txt" || problems+=("nnseg status does not list $n"); done
if [[ $RANDOM_KILLS == 0 && ${#KILLED_CASES[@]} -lt $KILLS ]]; then
  problems+=("only ${#KILLED_CASES[@]} of $KILLS kills hit a running case (the cases ran out first)")
fi
if "$NNSEG" audit verify --database "$URL" --public-key "${NNSEG_SIGNING_KEY}.pub" --receipts "$SHARED/outgoing" >"$DIR/verify.txt" 2>&1; then :; else
  problems+=("audit verify failed: $(tail -3 "$DIR/verify.txt" | tr '\n' ' ')")
fi
elapsed=$(python3 -c "print(f'{$END - $START:.1f}')")
per_node=$(sql "SELECT string_agg(node || ' ' || n, ', ') FROM (SELECT split_part(payload::json->>'node', '/', 1) AS node, count(*) AS n FROM events e WHERE kind = 'job_claimed' AND NOT EXISTS (SELECT 1 FROM events f WHERE f.case_id = e.case_id AND f.kind = 'job_claimed' AND f.id > e.id) GROUP BY 1 ORDER BY 1) t")
if [[ ${#problems[@]} -gt 0 ]]; then
  printf 'demo-cluster: FAILED: %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "demo-cluster: OK: $SERIES series, each finished exactly once ($cases cases, $jobs jobs done, $outputs output folders, 0 partial), $KILLS_DONE kill(s) (${#KILLED_CASES[@]} mid-case, each taken over), audit verify passed"
echo "demo-cluster: throughput: $SERIES cases in $elapsed s = $(python3 -c "print(f'{$SERIES / ($END - $START) * 60:.1f}')") cases/min on ${#NAMES[@]} node(s) (cases by node: $per_node)"
