#!/usr/bin/env bash
# Installs every Debian package nnseg needs to build, run and test. Idempotent: quiet when all are present.
#
#   bash Ops/setup.sh          # build + runtime packages
#   bash Ops/setup.sh --test   # also the independent tools the tests call (dcmtk CLI, dicom3tools)
set -euo pipefail

BUILD_PACKAGES=(
  libdcmtk-dev        # DICOM reading/writing (C++ shim in Sources/CDCMTK)
  libopenjp2-7-dev    # JPEG 2000 decoding (not in DCMTK's free build)
  libdnnl-dev         # oneDNN 2.6 convolution kernels
  libsqlite3-dev      # audit log
  zlib1g-dev          # .nii.gz
)
TEST_PACKAGES=(
  dcmtk               # dcmdjpeg/dcmdump: independent decoders and dumps used by the tests
  dicom3tools         # dciodvfy: DICOM conformance checks of our outputs
  plastimatch         # rasterises our RTSTRUCTs back to masks, independently
  python3-venv        # for the highdicom validator environment
  sqlite3             # the tests edit an audit row by hand to prove tampering is caught
  postgresql          # the shared queue and audit log of several nodes (#19; private clusters by Ops/pg.sh)
  orthanc             # a real PACS for the network tests and Ops/demo-network.sh (started on loopback ports by them)
  curl                # Orthanc's REST API
  openssl             # the TLS tests make a throw-away CA
  chromium            # renders report.html headless to a PNG (the report test)
)

packages=("${BUILD_PACKAGES[@]}")
if [[ "${1:-}" == "--test" ]]; then packages+=("${TEST_PACKAGES[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Independent validators from PyPI for the tests (highdicom reads our SEGs back). Never a runtime dependency.
if [[ "${1:-}" == "--test" ]]; then
  VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv-validate"
  # cryptography: Ops/verify_audit.py checks the audit log's Ed25519 seals independently of nnseg (#18).
  if ! "$VENV/bin/python" -c "import highdicom, pydicom, numpy, cryptography" >/dev/null 2>&1; then
    echo "setup: creating $VENV (highdicom, pydicom, numpy, cryptography)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "highdicom==0.28.2" "pydicom==3.0.2" numpy "cryptography==46.0.3"
  fi
  # dcmqi, pydicom-seg and dcmrtstruct2nii read our SEG/RTSTRUCT back too; they need pydicom 2.x: a second venv.
  VENV2="$(cd "$(dirname "$0")/.." && pwd)/.venv-validate-pydicom2"
  if ! "$VENV2/bin/python" -c "import pydicom_seg, dcmrtstruct2nii, SimpleITK" >/dev/null 2>&1 || [[ ! -x "$VENV2/bin/segimage2itkimage" ]]; then
    echo "setup: creating $VENV2 (dcmqi, pydicom-seg, dcmrtstruct2nii on pydicom 2.4)" >&2
    python3 -m venv "$VENV2"
    "$VENV2/bin/pip" install -q --disable-pip-version-check "pydicom==2.4.5" "pydicom-seg==0.4.1" "dcmrtstruct2nii==5" "dcmqi==1.5.7" \
      "SimpleITK==2.5.7" "numpy<2"
  fi
  # schemathesis checks the console against its OpenAPI file (#20).
  VENV3="$(cd "$(dirname "$0")/.." && pwd)/.venv-schemathesis"
  if ! "$VENV3/bin/schemathesis" --version >/dev/null 2>&1; then
    echo "setup: creating $VENV3 (schemathesis)" >&2
    python3 -m venv "$VENV3"
    "$VENV3/bin/pip" install -q --disable-pip-version-check "schemathesis==4.32.5"
  fi
fi

if ! command -v swift >/dev/null 2>&1; then
  if [[ -x /opt/swift/usr/bin/swift ]]; then
    echo "setup: swift is at /opt/swift/usr/bin but not on PATH; add it: export PATH=/opt/swift/usr/bin:\$PATH" >&2
  else
    echo "setup: the Swift 6.3 toolchain is missing (expected at /opt/swift); install it from swift.org first" >&2
  fi
  exit 1
fi
