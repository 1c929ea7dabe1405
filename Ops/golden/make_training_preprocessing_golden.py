"""Golden training-preprocessing outputs of the reference nnU-Net (2.8.1) for five Hippocampus cases.

Runs nnU-Net's own DefaultPreprocessor.run_case (crop, normalise, resample, foreground-location
sampling) with the reference plans — 3d_fullres and an anisotropic 3d_resampled variant — and stores data, seg and properties per case as an
.npz in Fixtures/golden/preprocessing/. Needs the reference venv (see README "Golden data").

usage: python make_training_preprocessing_golden.py SHARED_DIR OUT_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

shared, out = Path(sys.argv[1]), Path(sys.argv[2])
raw = shared / "data" / "Dataset004_Hippocampus"
plans_dict = json.loads((shared / "reference" / "Dataset004_Hippocampus" / "nnUNetPlans.json").read_text())
# A second configuration on an anisotropic grid, so that data and seg resampling and location sampling on
# the resampled grid are exercised (Hippocampus itself is 1 mm isotropic: 3d_fullres never resamples).
plans_dict["configurations"]["3d_resampled"] = {"inherits_from": "3d_fullres", "spacing": [1.3, 0.9, 1.7],
                                                "data_identifier": "nnUNetPlans_3d_resampled"}
plans = PlansManager(plans_dict)
dataset_json = json.loads((raw / "dataset.json").read_text())
out.mkdir(parents=True, exist_ok=True)


def key_name(k):
    return "_".join(str(x) for x in k) if isinstance(k, tuple) else str(k)

for case in ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_007"]:
    for configuration in ["3d_fullres", "3d_resampled"]:
        pre = DefaultPreprocessor(verbose=False)
        data, seg, props = pre.run_case([str(raw / "imagesTr" / f"{case}_0000.nii.gz")], str(raw / "labelsTr" / f"{case}.nii.gz"),
                                        plans, plans.get_configuration(configuration), dataset_json)
        locations = {f"locations_{key_name(k)}": np.asarray(v, dtype=np.int64).reshape(-1, 4) for k, v in props["class_locations"].items()}
        np.savez_compressed(out / f"{case}_{configuration}.npz", data=data.astype(np.float32), seg=seg.astype(np.int16),
                            bbox=np.asarray(props["bbox_used_for_cropping"], dtype=np.int64),
                            shape_before=np.asarray(props["shape_before_cropping"], dtype=np.int64),
                            shape_after=np.asarray(props["shape_after_cropping_and_before_resampling"], dtype=np.int64), **locations)
        print(case, configuration, data.shape, seg.dtype, {k: len(v) for k, v in props["class_locations"].items()})

# With an ignore label declared (value 3, absent from the data), nnU-Net also collects the "all annotated"
# region (-1, 0, 1, 2): 10,000 of every voxel's coordinates, drawn after the per-class draws.
ignore_json = dict(dataset_json, labels=dict(dataset_json["labels"], ignore=3))
case = "hippocampus_001"
data, seg, props = DefaultPreprocessor(verbose=False).run_case(
    [str(raw / "imagesTr" / f"{case}_0000.nii.gz")], str(raw / "labelsTr" / f"{case}.nii.gz"),
    plans, plans.get_configuration("3d_fullres"), ignore_json)
np.savez_compressed(out / f"{case}_3d_fullres_ignore.npz",
                    **{f"locations_{key_name(k)}": np.asarray(v, dtype=np.int64).reshape(-1, 4) for k, v in props["class_locations"].items()})
print(case, "ignore", {k: len(v) for k, v in props["class_locations"].items()})
