#!/usr/bin/env python3
"""Where the labels lie in the batches of a replay-format folder (#25): mirroring, rotation and scaling move the two
labels' centroids, so their laws show in the vector d = centroid(label 1) − centroid(label 2) per sample — the share
of samples with d > 0 on each axis (0.5 on every mirrored axis), the mean |d| per axis and its length (rotation and
scaling), which axis d points along, and the voxels per label. Run it on folders of both loaders — nnU-Net's
(`nnunet_replay.py --batches-only`, KEEP_BATCHES=1) and nnseg's (`TrainingBenchmark dump`) — for the same plans.

Usage: batch_geometry.py <folder with batches/ and plans.json>… [--batches N]   (numpy: REF_PYTHON)
"""
import json
import os
import sys

import numpy as np


def main():
    arguments = sys.argv[1:]
    limit = None
    if "--batches" in arguments:
        i = arguments.index("--batches")
        limit = int(arguments[i + 1])
        del arguments[i:i + 2]
    for folder in arguments:
        configuration = json.load(open(os.path.join(folder, "plans.json")))["configurations"]["3d_fullres"]
        batch, patch = configuration["batch_size"], configuration["patch_size"]
        files = sorted(f for f in os.listdir(os.path.join(folder, "batches")) if f.endswith(".target"))[:limit]
        vectors, voxels = [], []
        for name in files:
            target = np.fromfile(os.path.join(folder, "batches", name), dtype=np.int16).reshape([batch] + patch)
            for sample in target:
                centroids = [np.argwhere(sample == label).mean(0) if (sample == label).any() else None for label in (1, 2)]
                voxels.append([(sample == label).sum() for label in (1, 2)])
                if centroids[0] is not None and centroids[1] is not None:
                    vectors.append(centroids[0] - centroids[1])
        d, v = np.array(vectors), np.array(voxels)
        source = json.load(open(os.path.join(folder, "losses.json"))).get("source", "nnU-Net's loader")
        print(f"{folder} — {source}: {len(files)} batches, {len(d)} samples with both labels")
        print(f"  share d > 0 per axis {np.round((d > 0).mean(0), 3).tolist()} (standard error {np.sqrt(0.25 / len(d)):.3f})")
        print(f"  mean |d| per axis {np.round(np.abs(d).mean(0), 2).tolist()}, |d| {np.linalg.norm(d, axis=1).mean():.2f}"
              f" ± {np.linalg.norm(d, axis=1).std():.2f}; d along axis 0/1/2"
              f" {np.round(np.bincount(np.abs(d).argmax(1), minlength=3) / len(d), 3).tolist()}")
        print(f"  voxels per sample label 1 {v[:, 0].mean():.1f}, label 2 {v[:, 1].mean():.1f}")


if __name__ == "__main__":
    main()
