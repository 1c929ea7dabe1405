#!/usr/bin/env bash
# The network demo (issue #15): Orthanc as the PACS on loopback ports in a temporary folder, nnseg serve with
# the demo model routing SEG + RTSTRUCT to it, the demo MR series sent by DCMTK's storescu. Exits 0 only when
# Orthanc holds the SEG and the RTSTRUCT in the source study, each referencing the source series and its
# Frame of Reference. Stops everything it started.
#
#   bash Ops/demo-network.sh            # builds nnseg if needed (NNSEG=path/to/nnseg to use another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source Ops/env.sh
NNSEG="${NNSEG:-}"
if [[ -z "$NNSEG" ]]; then swift build --product nnseg >/dev/null; NNSEG="$ROOT/.build/debug/nnseg"; fi
for tool in /usr/sbin/Orthanc storescu curl python3; do
  command -v "$tool" >/dev/null || { echo "demo-network: $tool is missing (bash Ops/setup.sh --test)" >&2; exit 2; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
DIR="$(mktemp -d)"
ORTHANC_HTTP=$(free_port) ORTHANC_DICOM=$(free_port) NNSEG_PORT=$(free_port)
pids=()
cleanup() {
  # TERM, then KILL after 10 s (a process started with SIGTERM blocked, as under some test runners, ignores it).
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break; sleep 0.2
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

# Orthanc: loopback only, its own storage, accepts C-STORE from anyone, REST without authentication (loopback).
mkdir -p "$DIR/orthanc"
cat > "$DIR/orthanc/orthanc.json" <<JSON
{ "Name": "nnseg-demo-pacs", "StorageDirectory": "$DIR/orthanc/db", "IndexDirectory": "$DIR/orthanc/db",
  "HttpPort": $ORTHANC_HTTP, "DicomPort": $ORTHANC_DICOM, "DicomAet": "ORTHANC", "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "DicomCheckCalledAet": false, "HttpServerEnabled": true, "Plugins": [] }
JSON
/usr/sbin/Orthanc "$DIR/orthanc/orthanc.json" >"$DIR/orthanc.log" 2>&1 &
pids+=($!)

# nnseg: the demo profile (no mirroring, for speed) routing to Orthanc.
sed -e "s#../Fixtures/demo/model#$ROOT/Fixtures/demo/model#" -e "s/mirroring: true/mirroring: false/" Profiles/hippocampus-demo.yaml > "$DIR/profile.yaml"
cat >> "$DIR/profile.yaml" <<YAML
destinations:
  - {name: pacs, aeTitle: ORTHANC, host: 127.0.0.1, port: $ORTHANC_DICOM, outputs: [SEG, RTSTRUCT]}
YAML
cat > "$DIR/site.yaml" <<YAML
profile: profile.yaml
node: {aeTitle: NNSEG, bindAddress: 127.0.0.1, port: $NNSEG_PORT, allowedCallers: [DEMO_SCANNER], freeDiskFloorMB: 100}
folders: {work: work, outgoing: out}
intake: {quietPeriod: 1, pollInterval: 0.2}
outbox: {firstRetryDelay: 1, maxRetryDelay: 5}
auditDatabase: audit.sqlite
YAML
# The site's keys (#18): pseudonyms and signed cases (a test run passes its own through the environment).
if [[ -z "${NNSEG_PSEUDONYM_KEY:-}" ]]; then
  "$NNSEG" keys init --pseudonym-key "$DIR/keys/pseudonym.key" --signing-key "$DIR/keys/audit-signing.key" >/dev/null
  export NNSEG_PSEUDONYM_KEY="$DIR/keys/pseudonym.key" NNSEG_SIGNING_KEY="$DIR/keys/audit-signing.key"
fi
"$NNSEG" serve --site "$DIR/site.yaml" --log-level notice >"$DIR/serve.log" 2>&1 &
pids+=($!)

wait_for() {  # seconds, description, command…
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done
  echo "demo-network: timed out waiting for $what" >&2
  tail -20 "$DIR/serve.log" >&2
  return 1
}
wait_for 60 "Orthanc" curl -sf "http://127.0.0.1:$ORTHANC_HTTP/system"
wait_for 60 "nnseg serve" echoscu -aet DEMO_SCANNER -aec NNSEG 127.0.0.1 "$NNSEG_PORT"
echo "demo-network: Orthanc on $ORTHANC_DICOM (REST $ORTHANC_HTTP), nnseg serve on $NNSEG_PORT; sending the demo series"
storescu -aet DEMO_SCANNER -aec NNSEG 127.0.0.1 "$NNSEG_PORT" Fixtures/demo/hippocampus-mr/*.dcm

outputs_in_orthanc() {
  curl -sf "http://127.0.0.1:$ORTHANC_HTTP/tools/find" -d '{"Level":"Instance","Query":{"Modality":"SEG\\RTSTRUCT"}}' \
    | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)) >= 2 else 1)'
}
wait_for 180 "SEG and RTSTRUCT in Orthanc" outputs_in_orthanc

# Check what arrived against the source series, through Orthanc's REST API.
SOURCE_SERIES=$(dcmdump +P 0020,000e Fixtures/demo/hippocampus-mr/1.dcm | sed -E 's/.*\[(.*)\].*/\1/')
SOURCE_STUDY=$(dcmdump +P 0020,000d Fixtures/demo/hippocampus-mr/1.dcm | sed -E 's/.*\[(.*)\].*/\1/')
SOURCE_FOR=$(dcmdump +P 0020,0052 Fixtures/demo/hippocampus-mr/1.dcm | sed -E 's/.*\[(.*)\].*/\1/')
python3 - "$ORTHANC_HTTP" "$SOURCE_STUDY" "$SOURCE_SERIES" "$SOURCE_FOR" <<'PY'
import json, sys, urllib.request
port, study, series, frame = sys.argv[1:5]
def get(path, data=None):
    return json.load(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)))
found = {}
for iid in get("/tools/find", json.dumps({"Level": "Instance", "Query": {"Modality": "SEG\\RTSTRUCT"}}).encode()):
    tags = get(f"/instances/{iid}/simplified-tags")
    found[tags["Modality"]] = tags
problems = []
for modality in ("SEG", "RTSTRUCT"):
    t = found.get(modality)
    if t is None:
        problems.append(f"{modality} missing"); continue
    if t.get("StudyInstanceUID") != study: problems.append(f"{modality}: StudyInstanceUID {t.get('StudyInstanceUID')} is not the source study")
    if modality == "SEG":
        refs = [s.get("SeriesInstanceUID") for s in t.get("ReferencedSeriesSequence", [])]
        if t.get("FrameOfReferenceUID") != frame: problems.append("SEG: FrameOfReferenceUID differs from the source")
    else:
        refs = [se.get("SeriesInstanceUID") for fr in t.get("ReferencedFrameOfReferenceSequence", [])
                for st in fr.get("RTReferencedStudySequence", []) for se in st.get("RTReferencedSeriesSequence", [])]
        frames = [fr.get("FrameOfReferenceUID") for fr in t.get("ReferencedFrameOfReferenceSequence", [])]
        if frame not in frames: problems.append("RTSTRUCT: the source Frame of Reference is not referenced")
    if series not in refs: problems.append(f"{modality}: the source series is not referenced ({refs})")
if problems:
    print("demo-network: FAILED: " + "; ".join(problems), file=sys.stderr); sys.exit(1)
print(f"demo-network: OK: SEG and RTSTRUCT are in Orthanc, in study {study}, referencing series {series} and its Frame of Reference")
PY
"$NNSEG" outbox list --site "$DIR/site.yaml"
"$NNSEG" audit verify --database "$DIR/audit.sqlite"
