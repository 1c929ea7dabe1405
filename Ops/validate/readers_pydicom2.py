#!/usr/bin/env python3
"""Independent readers of nnseg's SEG and RTSTRUCT that need pydicom 2.x (validation only, never used by nnseg):
dcmqi (segimage2itkimage), pydicom-seg and dcmrtstruct2nii. Run with Ops/setup.sh --test's .venv-validate-pydicom2.

    python readers_pydicom2.py <seg.dcm> <rtstruct.dcm> <source dir> <expected.json> <scratch dir>

expected.json: {"segments": {"<segment number>": <voxel count>}, "rois": {"<ROI name>": <voxel count>}} — the voxel
counts of each segment in the label map and of each ROI in the contours nnseg meant to write. Prints JSON with what
each reader found; exit 0 when dcmqi and pydicom-seg give every segment's voxel count exactly and dcmrtstruct2nii
gives a mask for every ROI within 2 % of its count (it fills polygons by its own rule).
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pydicom
import pydicom_seg
import SimpleITK as sitk
from dcmrtstruct2nii import dcmrtstruct2nii


def main(seg_path, rt_path, source_dir, expected_path, scratch):
    expected = json.load(open(expected_path))
    report = {"dcmqi": {}, "pydicom_seg": {}, "dcmrtstruct2nii": {}}
    ok = True
    # dcmqi: one image per segment.
    out = os.path.join(scratch, "dcmqi")
    os.makedirs(out, exist_ok=True)
    tool = os.path.join(os.path.dirname(sys.executable), "segimage2itkimage")  # the venv's dcmqi
    run = subprocess.run([tool, "--inputDICOM", seg_path, "--outputDirectory", out, "--outputType", "nrrd"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        report["dcmqi"]["error"] = run.stderr[-500:]
        ok = False
    else:
        meta = json.load(open(os.path.join(out, "meta.json")))
        numbers = [a["labelID"] for group in meta["segmentAttributes"] for a in group]
        files = sorted(glob.glob(os.path.join(out, "*.nrrd")), key=lambda p: int(os.path.basename(p).split(".")[0]))
        for number, path in zip(numbers, files):
            count = int((sitk.GetArrayFromImage(sitk.ReadImage(path)) > 0).sum())
            report["dcmqi"][str(number)] = count
    # pydicom-seg: the segments as arrays.
    try:
        result = pydicom_seg.SegmentReader().read(pydicom.dcmread(seg_path))
        for number in result.available_segments:
            report["pydicom_seg"][str(number)] = int(result.segment_data(number).astype(bool).sum())
    except Exception as e:  # noqa: BLE001 — the report says what failed
        report["pydicom_seg"]["error"] = repr(e)
        ok = False
    for reader in ("dcmqi", "pydicom_seg"):
        if report[reader] and "error" not in report[reader] and report[reader] != expected["segments"]:
            ok = False
            report[reader + "_mismatch"] = {k: (v, report[reader].get(k)) for k, v in expected["segments"].items() if report[reader].get(k) != v}
    # dcmrtstruct2nii: one mask per ROI on the source grid.
    out = os.path.join(scratch, "rt")
    os.makedirs(out, exist_ok=True)
    try:
        dcmrtstruct2nii(rt_path, source_dir, out, gzip=True, convert_original_dicom=False)
        for name, count in expected["rois"].items():
            path = os.path.join(out, "mask_" + name.replace(" ", "-") + ".nii.gz")
            if not os.path.exists(path):
                report["dcmrtstruct2nii"][name] = "missing"
                ok = False
                continue
            found = int((sitk.GetArrayFromImage(sitk.ReadImage(path)) > 0).sum())
            report["dcmrtstruct2nii"][name] = found
            if abs(found - count) > max(2, 0.02 * count):
                ok = False
    except Exception as e:  # noqa: BLE001
        report["dcmrtstruct2nii"]["error"] = repr(e)
        ok = False
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
