#!/usr/bin/env python3
"""Record what SimpleITK reports for the shared test data, as golden values for nnseg's tests.

Run with a Python that has SimpleITK (never a runtime dependency of nnseg):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install SimpleITK numpy
    /tmp/ref/bin/python Ops/golden/make_sitk_geometry.py ../shared > Fixtures/golden/sitk_geometry.json

Geometry is SimpleITK's (ITK conventions: LPS, spacing/origin in x,y,z, direction row-major 3x3 whose
column j is index axis j). Size is (x, y, z). For DICOM series the files are sorted by SimpleITK's own
GDCM series file lister.
"""
import hashlib
import json
import os
import sys

import numpy as np
import SimpleITK as sitk


def describe(img):
    arr = sitk.GetArrayViewFromImage(img)
    return {
        "size": list(img.GetSize()),
        "spacing": list(img.GetSpacing()),
        "origin": list(img.GetOrigin()),
        "direction": list(img.GetDirection()),
        "pixel_type": img.GetPixelIDTypeAsString(),
        "sum": float(np.asarray(arr, dtype=np.float64).sum()),
    }


def main(shared):
    out = {"simpleitk_version": sitk.Version_VersionString(), "nifti": {}, "dicom_series": {}}
    data = os.path.join(shared, "data")
    files = []
    hip = os.path.join(data, "Dataset004_Hippocampus")
    for sub in ("imagesTr", "labelsTr"):
        for f in sorted(os.listdir(os.path.join(hip, sub))):
            files.append(os.path.join("Dataset004_Hippocampus", sub, f))
    ts = os.path.join(data, "totalseg-example")
    for f in sorted(os.listdir(ts)):
        if f.endswith(".nii.gz"):
            files.append(os.path.join("totalseg-example", f))
    files.append(os.path.join("dicom-zoo", "transfer-syntaxes-mr-slice", "ref_1.nii"))
    for rel in files:
        out["nifti"][rel] = describe(sitk.ReadImage(os.path.join(data, rel)))

    series_dirs = [
        "totalseg-example/example_ct_dicom",
        "dicom-zoo/mr-hippocrop/study1",
        "dicom-zoo/mr-hippocrop/study2",
        "dicom-zoo/mr-multiseries-study3",
        "dicom-zoo/ct-oblique-rtutils",
        "dicom-zoo/ct-gantry-tilt-ge",
        "dicom-zoo/seg-dcmqi-liver/ct-3slice",
    ]
    for rel in series_dirs:
        d = os.path.join(data, rel)
        reader = sitk.ImageSeriesReader()
        for sid in reader.GetGDCMSeriesIDs(d):
            names = reader.GetGDCMSeriesFileNames(d, sid)
            reader.SetFileNames(names)
            img = reader.Execute()
            entry = describe(img)
            entry["files"] = [os.path.basename(n) for n in names]
            arr = sitk.GetArrayFromImage(img)
            entry["array_sha256_le"] = hashlib.sha256(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).hexdigest()
            out["dicom_series"][rel + "#" + sid] = entry
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared")
