"""Golden model selection of the reference nnU-Net (2.8.1): nnUNetv2_find_best_configuration with ensembling on
real nnU-Net probabilities.

Inputs (all from shared/reference, nothing invented but two exact array shifts): the 5 Hippocampus cases the
reference model predicted with and without mirroring (predictions/tta, predictions/notta: softmax probabilities
saved by nnUNetv2_predict --save_probabilities). Case k of the 5 (sorted by name) is validated in fold k. Four
"trained models" of a results tree, each fold_k/validation holding <case>.npz (probabilities), <case>.pkl
(SimpleITK properties of the input image) and <case>.nii.gz (the argmax, on the input image's geometry):
  nnUNetTrainer__nnUNetPlans__3d_fullres          the mirrored probabilities, with a 3x3x3 island in the array
                                                  corner (label 1 in even folds, 2 in odd ones; p 0.875)
  nnUNetTrainer__nnUNetPlans__2d                  the unmirrored probabilities
  nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres   the mirrored ones shifted by one voxel along x (np.roll(p, 1, axis=3))
  nnUNetTrainer_1epoch__nnUNetPlans__2d           the unmirrored ones shifted by one voxel along y (np.roll(p, 1, axis=2))
The Swift test (ModelSelectionTests) builds the same tree. find_best_configuration(-tr nnUNetTrainer
nnUNetTrainer_1epoch -c 2d 3d_fullres, folds 0-4, one process) then scores 4 models and 6 ensembles, picks the
best and determines its postprocessing. The golden keeps inference_information.json (paths relative to the results
root), every candidate's summary Dice, and per ensembled case the label counts and the SHA-256 of its uint8 label
array (z, y, x, C order), in Fixtures/golden/model_selection/hippocampus_5cases.json. Needs the reference venv.

usage: python make_model_selection_golden.py SHARED_DIR OUT_FILE
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

MODELS = [
    ("nnUNetTrainer__nnUNetPlans__3d_fullres", "tta", None),
    ("nnUNetTrainer__nnUNetPlans__2d", "notta", None),
    ("nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres", "tta", 3),
    ("nnUNetTrainer_1epoch__nnUNetPlans__2d", "notta", 2),
]
# One model predicts a 3x3x3 island in the array corner [0:3, 0:3, 0:3] (probability 0.875 for label 1 in even
# folds, 2 in odd ones, 0.125 background; exact in float32), so that this model loses to an ensemble in which the
# other member outvotes the island.
ISLAND_MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def main(shared, out_file):
    shared = Path(shared)
    reference = shared / "reference/Dataset004_Hippocampus"
    model = reference / "model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres"
    cases = sorted(f[:-4] for f in os.listdir(reference / "predictions/tta") if f.endswith(".npz"))
    work = Path(tempfile.mkdtemp())
    name = "Dataset004_Hippocampus"
    raw, pre, results = work / "raw" / name, work / "pre" / name, work / "results" / name
    for folder in [raw / "labelsTr", pre / "gt_segmentations", results]:
        folder.mkdir(parents=True)
    shutil.copy(shared / "data/Dataset004_Hippocampus/dataset.json", raw / "dataset.json")
    shutil.copy(reference / "nnUNetPlans.json", pre / "nnUNetPlans.json")
    shutil.copy(shared / "data/Dataset004_Hippocampus/dataset.json", pre / "dataset.json")
    for c in cases:
        for folder in [raw / "labelsTr", pre / "gt_segmentations"]:
            shutil.copy(shared / "data/Dataset004_Hippocampus/labelsTr" / f"{c}.nii.gz", folder / f"{c}.nii.gz")
    os.environ.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"), nnUNet_results=str(work / "results"))
    # nnunetv2 reads its paths when imported.
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration, dumb_trainer_config_plans_to_trained_models_dict
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from batchgenerators.utilities.file_and_folder_operations import save_pickle

    for identifier, source, axis in MODELS:
        folder = results / identifier
        folder.mkdir()
        shutil.copy(model / "plans.json", folder / "plans.json")
        shutil.copy(model / "dataset.json", folder / "dataset.json")
        for fold, c in enumerate(cases):
            validation = folder / f"fold_{fold}" / "validation"
            validation.mkdir(parents=True)
            p = np.load(reference / "predictions" / source / f"{c}.npz")["probabilities"].astype(np.float32)
            if axis is not None:
                p = np.roll(p, 1, axis=axis)
            if identifier == ISLAND_MODEL:
                p[:, 0:3, 0:3, 0:3] = 0
                p[0, 0:3, 0:3, 0:3] = 0.125
                p[1 + fold % 2, 0:3, 0:3, 0:3] = 0.875
            np.savez_compressed(validation / f"{c}.npz", probabilities=p)
            image_file = str(shared / "data/Dataset004_Hippocampus/imagesTr" / f"{c}_0000.nii.gz")
            _, properties = SimpleITKIO().read_images([image_file])
            save_pickle(properties, validation / f"{c}.pkl")
            image = sitk.ReadImage(image_file)
            seg = sitk.GetImageFromArray(np.argmax(p, 0).astype(np.uint8))
            seg.CopyInformation(image)
            sitk.WriteImage(seg, str(validation / f"{c}.nii.gz"))

    models = dumb_trainer_config_plans_to_trained_models_dict(["nnUNetTrainer", "nnUNetTrainer_1epoch"], ["2d", "3d_fullres"], ["nnUNetPlans"])
    info = find_best_configuration(name, models, allow_ensembling=True, num_processes=1, overwrite=True, folds=(0, 1, 2, 3, 4), strict=False)
    info = json.loads((results / "inference_information.json").read_text())
    root = str(work / "results")
    for key in ["postprocessing_file", "some_plans_file"]:
        info["best_model_or_ensemble"][key] = os.path.relpath(info["best_model_or_ensemble"][key], root)

    def summary(folder):
        s = json.loads((folder / "summary.json").read_text())
        return {"foreground_mean": s["foreground_mean"]["Dice"], "mean": {k: v["Dice"] for k, v in s["mean"].items()}}

    candidates = {}
    for identifier, _, _ in MODELS:
        candidates[identifier] = summary(results / identifier / "crossval_results_folds_0_1_2_3_4")
    ensembles = {}
    for folder in sorted((results / "ensembles").iterdir()):
        candidates[folder.name] = summary(folder)
        per_case = {}
        for c in cases:
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{c}.nii.gz"))).astype(np.uint8)
            per_case[c] = {"counts": {str(k): int((array == k).sum()) for k in range(3)},
                           "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}
        ensembles[folder.name] = per_case
    best_source = Path(root) / Path(info["best_model_or_ensemble"]["postprocessing_file"]).parent
    pp = json.loads((best_source / "postprocessing.json").read_text())
    golden = {
        "source": "reference model's 5 predicted cases, mirrored and unmirrored probabilities (see the script)",
        "cases": cases,
        "inference_information": info,
        "candidates": candidates,
        "ensembles": ensembles,
        "postprocessing": {"postprocessing_fns": pp["postprocessing_fns"], "postprocessing_kwargs": pp["postprocessing_kwargs"]},
    }
    print(json.dumps(golden["inference_information"], indent=1))
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
