#!/usr/bin/env python3
"""Golden outputs of nnU-Net 2.8.1's resample_data_or_seg_to_shape (scikit-image 0.26, SciPy 1.17).

    /tmp/ref/bin/python Ops/golden/make_resampling_golden.py ../shared Fixtures/golden/resampling

Small random cases are stored whole (.npy); the TotalSegmentator CT series resampled to 1.5 mm (order 3,
the default data kwargs) is stored as 40,000 sampled voxels plus global statistics, to keep Fixtures small.
"""
import json
import os
import sys

import numpy as np
import SimpleITK as sitk
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape


def main(shared, out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(0)
    cases = []
    data = rng.randn(1, 10, 20, 24).astype(np.float32) * 100
    seg = np.zeros((1, 10, 20, 24), np.float32)
    seg[0, 2:8, 4:15, 5:20] = 1
    seg[0, 4:6, 8:12, 10:14] = 2
    seg[0, 0:3, 0:5, 0:4] = 3
    np.save(os.path.join(out, "input_data.npy"), data)
    np.save(os.path.join(out, "input_seg.npy"), seg)
    specs = [
        ("data_sepz", data, [5, 1, 1], [2, 0.8, 0.8], dict(is_seg=False, order=3, order_z=0, force_separate_z=None)),
        ("data_3d", data, [1.5, 1, 1], [1, 1.2, 0.9], dict(is_seg=False, order=3, order_z=0, force_separate_z=None)),
        ("data_linear_down", data, [1, 1, 1], [1.3, 1.7, 1.1], dict(is_seg=False, order=1, order_z=0, force_separate_z=None)),
        ("seg_sepz", seg, [5, 1, 1], [2, 0.8, 0.8], dict(is_seg=True, order=1, order_z=0, force_separate_z=None)),
        ("seg_3d", seg, [1.5, 1, 1], [1, 1.2, 0.9], dict(is_seg=True, order=1, order_z=0, force_separate_z=None)),
    ]
    for name, array, spacing, target, kwargs in specs:
        shape = compute_new_shape(array.shape[1:], spacing, target)
        result = resample_data_or_seg_to_shape(array, shape, spacing, target, **kwargs)
        np.save(os.path.join(out, f"{name}.npy"), result.astype(np.float32))
        cases.append({"name": name, "input": "input_seg.npy" if kwargs["is_seg"] else "input_data.npy", "spacing": spacing,
                      "target": target, "new_shape": [int(s) for s in shape], **kwargs})

    # TotalSegmentator CT series → 1.5 mm isotropic, order 3.
    reader = sitk.ImageSeriesReader()
    folder = os.path.join(shared, "data/totalseg-example/example_ct_dicom")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder, ""))
    image = reader.Execute()
    ct = sitk.GetArrayFromImage(image).astype(np.float32)[None]
    spacing = list(image.GetSpacing())[::-1]
    target = [1.5, 1.5, 1.5]
    shape = compute_new_shape(ct.shape[1:], spacing, target)
    result = resample_data_or_seg_to_shape(ct, shape, spacing, target, is_seg=False, order=3, order_z=0, force_separate_z=None)[0]
    pick = np.random.RandomState(1).randint(0, result.size, 40000)
    indices = np.array(np.unravel_index(pick, result.shape)).T.astype(np.int32)
    np.save(os.path.join(out, "totalseg_ct_1p5mm_indices.npy"), np.ascontiguousarray(indices.astype(np.float32)))
    np.save(os.path.join(out, "totalseg_ct_1p5mm_values.npy"), result.reshape(-1)[pick].astype(np.float32))
    json.dump({"cases": cases, "totalseg_ct": {"input_spacing_zyx": spacing, "target": target, "new_shape": [int(s) for s in shape],
                                               "sum": float(result.astype(np.float64).sum()), "min": float(result.min()),
                                               "max": float(result.max()), "samples": 40000}},
              open(os.path.join(out, "cases.json"), "w"), indent=1)
    print("done", [c["new_shape"] for c in cases], shape)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
