#!/usr/bin/env python3
"""Golden outputs of nnU-Net's spatial augmentation (batchgeneratorsv2's SpatialTransform as nnUNetTrainer 2.8.1
configures it: no elastic deformation, one scale for all axes, image bilinear with zero padding, segmentation
interpolated per label with padding −1) for fixed angles and scales (#25).

The input is a real Hippocampus case (`hippocampus_001` of the shared dataset: its image z-scored, its label) placed
in the middle of a crop of the enlarged patch nnU-Net's loader reads for 3d_fullres (73 × 80 × 64), padded with 0
(image) and −1 (label) as the loader pads. The transform's random parameters are replaced by fixed ones (callables
for the angles and the scale, probability 1 or 0), so the same parameters can be given to nnseg's augmenter.
Writes `spatial.npz`: `image`, `label` (the input, float32), and per case k `angles<k>`, `scale<k>` and the
outputs `image<k>`, `label<k>` (40 × 56 × 40).

    /tmp/ref/bin/python Ops/golden/make_spatial_golden.py ../shared/data/Dataset004_Hippocampus Fixtures/golden/augmentation
"""
import os
import sys

import nibabel
import numpy as np
import torch
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

PATCH = (40, 56, 40)
ENLARGED = (73, 80, 64)
# (angles about axes 0, 1, 2 in radians, scale); None: the transform draws neither (a plain centre crop).
CASES = [
    None,
    ((0.3, -0.2, 0.45), 1.0),
    ((0.0, 0.0, 0.0), 1.3),
    ((-0.5, 0.1, 0.25), 0.75),
    ((0.52, 0.52, -0.52), 1.4),
]


def main():
    dataset, out = sys.argv[1], sys.argv[2]
    image = nibabel.load(os.path.join(dataset, "imagesTr", "hippocampus_001_0000.nii.gz")).get_fdata().astype(np.float32)
    label = nibabel.load(os.path.join(dataset, "labelsTr", "hippocampus_001.nii.gz")).get_fdata().astype(np.int16)
    image = (image - image.mean()) / max(image.std(), 1e-8)
    crop_image = np.zeros(ENLARGED, dtype=np.float32)
    crop_label = np.full(ENLARGED, -1, dtype=np.int16)
    start = [(e - s) // 2 for e, s in zip(ENLARGED, image.shape)]
    region = tuple(slice(b, b + s) for b, s in zip(start, image.shape))
    crop_image[region], crop_label[region] = image, label
    arrays = {"image": crop_image, "label": crop_label.astype(np.float32)}
    for k, case in enumerate(CASES):
        angles, scale = case if case is not None else ((0.0, 0.0, 0.0), 1.0)
        transform = SpatialTransform(
            PATCH, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
            p_rotation=0 if case is None or not any(angles) else 1, rotation=lambda image, dim, a=angles: a[dim],
            p_scaling=0 if case is None or scale == 1 else 1, scaling=lambda image, dim, s=scale: s,
            p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False, border_mode_seg="constant",
            padding_value_seg=-1)
        result = transform(image=torch.from_numpy(crop_image[None]), segmentation=torch.from_numpy(crop_label[None]))
        arrays[f"angles{k}"] = np.array(angles, dtype=np.float32)
        arrays[f"scale{k}"] = np.array([scale], dtype=np.float32)
        arrays[f"image{k}"] = result["image"][0].numpy().astype(np.float32)
        arrays[f"label{k}"] = result["segmentation"][0].numpy().astype(np.float32)
        print(f"case {k}: angles {angles}, scale {scale}: labels {np.unique(arrays[f'label{k}']).tolist()}")
    os.makedirs(out, exist_ok=True)
    np.savez_compressed(os.path.join(out, "spatial.npz"), **arrays)


if __name__ == "__main__":
    main()
