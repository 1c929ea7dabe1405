#!/usr/bin/env bash
# Receive throughput (issue #15): a 500-instance CT-like series (512×512, 16-bit, uncompressed, ≈ 256 MB; built
# from the header of ../shared/data/totalseg-example's CT with smooth synthetic pixels) sent by DCMTK's storescu
# into `nnseg serve` and into DCMTK's own storescp (the anchor), alternating, RUNS times each (default 3), on
# loopback. Prints instances/s and MB/s side by side (medians) and the ratio nnseg / storescp (goal ≥ 0.8).
# storescp is measured twice: as shipped, and with TCP_NODELAY=1 (DCMTK's switch for Nagle's algorithm; nnseg's
# receiver sets TCP_NODELAY itself — without it each C-STORE-RSP waits ~40 ms for a delayed ACK). The ratio
# that counts is against the faster of the two.
#
#   bash Ops/bench/receive.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source Ops/env.sh
RUNS="${1:-3}"
swift build -c release --product nnseg >/dev/null
NNSEG="$ROOT/.build/release/nnseg"
PY="$ROOT/.venv-validate/bin/python"
[[ -x "$PY" ]] || { echo "receive: run bash Ops/setup.sh --test first (python venv with pydicom)" >&2; exit 2; }
DIR="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

"$PY" - "$DIR/series" <<'PY'
import os, sys, glob, numpy as np, pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
out = sys.argv[1]; os.makedirs(out)
src = sorted(glob.glob("../shared/data/totalseg-example/example_ct_dicom/*"))[0]
ds = pydicom.dcmread(src)
series, frame, study = generate_uid(), generate_uid(), generate_uid()
# The example CT is anonymised down to empty UIDs: give it a class and a study.
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
ds.StudyInstanceUID = study
y, x = np.mgrid[0:512, 0:512]
for k in range(500):
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [-250, -250, -k * 1.0]
    pixels = (1000 + 400 * np.sin(x / 40 + k / 25) * np.cos(y / 35)).astype(np.uint16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(os.path.join(out, f"{k:04d}.dcm"), enforce_file_format=True)
PY
BYTES=$(du -sb "$DIR/series" | cut -f1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_echo() { for _ in $(seq 1 100); do echoscu -aet BENCH -aec "$1" 127.0.0.1 "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
send() {  # port AE → seconds
  local start end
  start=$(date +%s.%N)
  storescu -aet BENCH -aec "$2" 127.0.0.1 "$1" +sd "$DIR/series" >"$DIR/storescu.log" 2>&1 || { echo "receive: storescu to $2 failed:" >&2; tail -3 "$DIR/storescu.log" >&2; }
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

# A site that receives only: the demo profile selects MR, so the CT-like series is refused at once after the
# transfer (NO_MATCHING_SERIES) and no case competes with the measurement.
sed -e "s#../Fixtures/demo/model#$ROOT/Fixtures/demo/model#" Profiles/hippocampus-demo.yaml > "$DIR/profile.yaml"
nnseg_times=() scp_times=() fast_times=()
for run in $(seq 1 "$RUNS"); do
  port=$(free_port); rm -rf "$DIR/scp"; mkdir -p "$DIR/scp"
  storescp -aet STORESCP -od "$DIR/scp" "$port" >/dev/null 2>&1 &
  pid=$!; pids+=($pid); wait_echo STORESCP "$port"
  scp_times+=("$(send "$port" STORESCP)")
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port); rm -rf "$DIR/scp"; mkdir -p "$DIR/scp"
  TCP_NODELAY=1 storescp -aet STORESCP -od "$DIR/scp" "$port" >/dev/null 2>&1 &
  pid=$!; pids+=($pid); wait_echo STORESCP "$port"
  fast_times+=("$(send "$port" STORESCP)")
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port); rm -rf "$DIR/node"; mkdir -p "$DIR/node"
  cat > "$DIR/node/site.yaml" <<YAML
profile: $DIR/profile.yaml
node: {aeTitle: NNSEG, port: $port, freeDiskFloorMB: 100}
folders: {work: work, outgoing: out}
intake: {quietPeriod: 30}
auditDatabase: audit.sqlite
YAML
  [[ -f "$DIR/keys/pseudonym.key" ]] || "$NNSEG" keys init --pseudonym-key "$DIR/keys/pseudonym.key" --signing-key "$DIR/keys/signing.key" >/dev/null
  NNSEG_PSEUDONYM_KEY="$DIR/keys/pseudonym.key" NNSEG_SIGNING_KEY="$DIR/keys/signing.key" "$NNSEG" serve --site "$DIR/node/site.yaml" --log-level error >/dev/null 2>&1 &
  pid=$!; pids+=($pid); wait_echo NNSEG "$port"
  nnseg_times+=("$(send "$port" NNSEG)")
  received=$(find "$DIR/node/work" -name '*.dcm' | wc -l)
  kill -TERM "$pid"; sleep 0.5; kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [[ "$received" == 500 ]] || { echo "receive: nnseg serve holds $received of 500 instances" >&2; exit 1; }
  printf 'run %s: storescp %.2f s, storescp TCP_NODELAY=1 %.2f s, nnseg serve %.2f s\n' "$run" "${scp_times[-1]}" "${fast_times[-1]}" "${nnseg_times[-1]}"
done
python3 - "$BYTES" "${scp_times[*]}" "${fast_times[*]}" "${nnseg_times[*]}" <<'PY'
import statistics, sys
size = int(sys.argv[1])
scp, fast, nn = (statistics.median(map(float, a.split())) for a in sys.argv[2:5])
print(f"{'':26} {'instances/s':>12} {'MB/s':>8}")
for name, t in (("storescp (as shipped)", scp), ("storescp TCP_NODELAY=1", fast), ("nnseg serve", nn)):
    print(f"{name:26} {500/t:12.1f} {size/t/1e6:8.1f}")
anchor = min(scp, fast)
print(f"ratio nnseg serve / fastest storescp: {anchor/nn:.2f}x (goal >= 0.8); / storescp as shipped: {scp/nn:.2f}x")
PY
