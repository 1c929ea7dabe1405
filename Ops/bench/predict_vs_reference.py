#!/usr/bin/env python3
"""nnseg predict against the reference nnU-Net timings on the 5 reference cases (issue #4).

    python3 Ops/bench/predict_vs_reference.py            # builds release, 3 runs each with and without TTA
    REF_PYTHON=/tmp/ref/bin/python python3 Ops/bench/predict_vs_reference.py   # also times nnU-Net live here

Prints whole-command wall clock and per-case time next to the reference's recorded figures
(shared/reference/.../predictions/timings.json) as ratios reference ÷ nnseg, the peak memory, and the
segmentation agreement with the reference outputs (equal results are part of the goal). Uses only the
Python standard library.
"""
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REF = os.path.join(ROOT, "..", "shared", "reference", "Dataset004_Hippocampus")
MODEL = os.path.join(REF, "model", "nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
INPUT = os.path.join(REF, "predictions", "input")
REPEATS = int(os.environ.get("REPEATS", "3"))


def voxels(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    offset = int(struct.unpack("<f", raw[108:112])[0])
    return raw[offset:]


def run_nnseg(binary, tta):
    out = tempfile.mkdtemp(prefix="nnseg-bench-")
    args = [binary, "predict", "-i", INPUT, "-o", out, "-m", MODEL, "-f", "0", "--log-level", "info"]
    if not tta:
        args.append("--disable-tta")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"nnseg failed:\n{proc.stderr}")
    per_case, peak = {}, None
    for line in proc.stderr.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok and not tok.startswith("2026"))
        if line.endswith("case done"):
            per_case[fields["case"]] = sum(float(v) for k, v in fields.items() if k.endswith("_s") and k != "write_s")
        if "prediction finished" in line:
            peak = int(fields["peakMemoryMiB"])
    return wall, per_case, peak, out


def agreement(out, mode):
    agree = total = 0
    for case in sorted(os.listdir(os.path.join(REF, "predictions", mode))):
        if not case.endswith(".nii.gz"):
            continue
        a, b = voxels(os.path.join(out, case)), voxels(os.path.join(REF, "predictions", mode, case))
        agree += sum(x == y for x, y in zip(a, b))
        total += len(b)
    return 100.0 * agree / total


def main():
    subprocess.run(["swift", "build", "-c", "release", "--product", "nnseg"], cwd=ROOT, check=True, capture_output=True)
    binary = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip() + "/nnseg"
    timings = json.load(open(os.path.join(REF, "predictions", "timings.json")))
    print(f"reference: {timings['machine']}")
    print(f"nnseg: {binary}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '2')}, {REPEATS} runs each\n")
    print(f"{'mode':6} {'measure':28} {'reference [s]':>13} {'nnseg [s]':>10} {'ratio ref÷nnseg':>16}")
    for mode, tta in (("tta", True), ("notta", False)):
        runs = [run_nnseg(binary, tta) for _ in range(REPEATS)]
        wall = statistics.median(r[0] for r in runs)
        reference_wall = timings["cli_wall_clock_s"][mode]["median"]
        print(f"{mode:6} {'whole command, 5 cases':28} {reference_wall:13.2f} {wall:10.2f} {reference_wall / wall:15.2f}×")
        for case in sorted(runs[0][1]):
            ours = statistics.median(r[1][case] for r in runs)
            theirs = timings["in_process"]["per_case_median_s"][case][mode]["total"]
            print(f"{mode:6} {'per case ' + case:28} {theirs:13.3f} {ours:10.3f} {theirs / ours:15.2f}×")
        print(f"{mode:6} {'peak memory':28} {'':13} {max(r[2] for r in runs):>7} MiB")
        print(f"{mode:6} {'segmentation agreement':28} {'':13} {agreement(runs[0][3], mode):9.4f} %\n")
    ref_python = os.environ.get("REF_PYTHON")
    if ref_python:
        live = subprocess.run([ref_python, os.path.join(ROOT, "Ops", "bench", "nnunet_live_timing.py"), MODEL, REF],
                              capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
        print("nnU-Net measured live on this machine (same cases, in-process, median of 3):")
        print(live.stdout or live.stderr[-2000:])


if __name__ == "__main__":
    main()
