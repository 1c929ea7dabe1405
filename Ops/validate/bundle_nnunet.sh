#!/usr/bin/env bash
# A bundle written by `nnseg model export` installs with nnU-Net's own installer and predicts as the source folder
# (#21). Needs the reference environment: REF_PYTHON=/tmp/ref/bin/python (torch + nnunetv2 2.8.1).
#
#   REF_PYTHON=/tmp/ref/bin/python bash Ops/validate/bundle_nnunet.sh [MODEL_FOLDER]
#
# Exports MODEL_FOLDER (default: the reference 1-epoch Hippocampus model in ../shared/reference) with nnseg,
# installs the zip with nnUNetv2_install_pretrained_model_from_zip into an empty nnUNet_results, predicts three
# reference cases with nnUNetv2_predict from the installed model and with nnUNetv2_predict_from_modelfolder from
# the source folder (no TTA), and compares the segmentations voxel by voxel. Exit 0 when all are identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Ops/env.sh
[[ -n "${REF_PYTHON:-}" ]] || { echo "bundle_nnunet: set REF_PYTHON to a Python with torch and nnunetv2 2.8.1" >&2; exit 2; }
BIN=$(dirname "$REF_PYTHON")
MODEL=${1:-../shared/reference/Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
swift build -c release --product nnseg >/dev/null
NNSEG="$(swift build -c release --show-bin-path)/nnseg"

"$NNSEG" model export --model "$MODEL" -f 0 --id bundle-check -o "$WORK/bundle.zip"
mkdir -p "$WORK/results" "$WORK/in"
export nnUNet_results="$WORK/results" nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/pre"
"$BIN/nnUNetv2_install_pretrained_model_from_zip" "$WORK/bundle.zip"
echo "installed by nnU-Net:"; (cd "$WORK/results" && find . -type f | sort | sed 's/^/  /')
for c in hippocampus_017 hippocampus_033 hippocampus_305; do
  cp "../shared/reference/Dataset004_Hippocampus/predictions/input/${c}_0000.nii.gz" "$WORK/in/"
done
dataset=$("$REF_PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset_name'])" "$MODEL/plans.json")
trainer_folder=$(cd "$WORK/results/$dataset" && ls -d *__*__* | head -1)
trainer=${trainer_folder%%__*}; rest=${trainer_folder#*__}; plans=${rest%%__*}; configuration=${rest#*__}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"$BIN/nnUNetv2_predict" -i "$WORK/in" -o "$WORK/from-bundle" -d "$dataset" -tr "$trainer" -p "$plans" -c "$configuration" -f 0 \
  --disable_tta -device cpu -npp 1 -nps 1 > "$WORK/predict-bundle.log" 2>&1
"$BIN/nnUNetv2_predict_from_modelfolder" -i "$WORK/in" -o "$WORK/from-source" -m "$MODEL" -f 0 --disable_tta -device cpu \
  -npp 1 -nps 1 > "$WORK/predict-source.log" 2>&1
"$REF_PYTHON" - "$WORK/from-bundle" "$WORK/from-source" <<'PY'
import os, sys
import SimpleITK as sitk
import numpy as np
a, b = sys.argv[1], sys.argv[2]
names = sorted(f for f in os.listdir(b) if f.endswith(".nii.gz"))
same = 0
for n in names:
    x = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(a, n)))
    y = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(b, n)))
    equal = x.shape == y.shape and np.array_equal(x, y)
    same += equal
    print(f"{n}: {'identical' if equal else 'DIFFERENT'} ({x.size} voxels, labels {sorted(np.unique(x).tolist())})")
print(f"{same} of {len(names)} cases identical between the bundle installed by nnU-Net and the source folder")
sys.exit(0 if names and same == len(names) else 1)
PY
