"""Golden postprocessing decisions of the reference nnU-Net (2.8.1): nnUNetv2_determine_postprocessing on real
cross-validation predictions.

Predictions: the reference 1-epoch model's fold-0 validation predictions (52 Hippocampus cases, in
shared/reference), against the raw labelsTr. Two scenarios:
  as_predicted  the predictions as they are;
  with_islands  each case with one 2x2x2 island in the array corner [0:2, 0:2, 0:2] (z, y, x of the image
                array) set to label 1 for even and 2 for odd case positions (cases sorted by name) — a
                deterministic perturbation the Swift test repeats, so that removing components pays off.
For each, nnU-Net's determine_postprocessing (one process) writes postprocessing.json; the golden keeps its
content without the folder path, plus every intermediate summary's Dice, in
Fixtures/golden/postprocessing/hippocampus_fold0.json. Needs the reference venv (README "Golden data").

usage: python make_postprocessing_golden.py SHARED_DIR OUT_FILE
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing


def dice_summary(path):
    s = json.loads(Path(path).read_text())
    return {"foreground_mean": s["foreground_mean"]["Dice"], "mean": {k: v["Dice"] for k, v in s["mean"].items()}}


def main(shared, out_file):
    shared = Path(shared)
    model = shared / "reference/Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres"
    predictions = model / "fold_0/validation"
    cases = sorted(f for f in os.listdir(predictions) if f.endswith(".nii.gz"))
    result = {"source": "reference 1-epoch model, fold 0 validation predictions", "cases": cases, "scenarios": {}}
    for scenario in ["as_predicted", "with_islands"]:
        work = Path(tempfile.mkdtemp())
        pred, ref = work / "pred", work / "ref"
        pred.mkdir(); ref.mkdir()
        for i, c in enumerate(cases):
            shutil.copy(shared / "data/Dataset004_Hippocampus/labelsTr" / c, ref / c)
            if scenario == "as_predicted":
                shutil.copy(predictions / c, pred / c)
            else:
                image = sitk.ReadImage(str(predictions / c))
                array = sitk.GetArrayFromImage(image)
                array[0:2, 0:2, 0:2] = 1 + i % 2
                out = sitk.GetImageFromArray(array)
                out.CopyInformation(image)
                sitk.WriteImage(out, str(pred / c))
        determine_postprocessing(str(pred), str(ref), str(model / "plans.json"), str(model / "dataset.json"),
                                 num_processes=1, keep_postprocessed_files=True)
        pp = json.loads((pred / "postprocessing.json").read_text())
        pp.pop("input_folder", None) if isinstance(pp.get("input_folder"), str) else None
        entry = {
            "postprocessing_fns": pp["postprocessing_fns"],
            "postprocessing_kwargs": pp["postprocessing_kwargs"],
            "baseline": dice_summary(pred / "summary.json"),
            "postprocessed": dice_summary(pred / "postprocessed/summary.json"),
            "keep_largest_foreground": dice_summary(pred / "postprocessed/temp/keep_largest_fg/summary.json")
            if (pred / "postprocessed/temp/keep_largest_fg/summary.json").exists() else None,
        }
        result["scenarios"][scenario] = entry
        print(scenario, json.dumps(entry, indent=1))
        shutil.rmtree(work)
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
