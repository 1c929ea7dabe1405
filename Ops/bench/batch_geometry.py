#!/usr/bin/env python3
"""Where the labels lie in the batches of a replay-format folder (#25): mirroring, rotation and scaling move the two
labels' centroids, so their laws show in the vector d = centroid(label 1) − centroid(label 2) per sample — the share
of samples with d > 0 on each axis (0.5 on every mirrored axis), the mean |d| per axis and its length (rotation and
scaling), which axis d points along, and the voxels per label. The intensity transforms show in per-sample image
statistics (mean, sd, 1st and 99th percentile, and the mean inside each label and in the background); with two or
more folders each statistic's distribution is compared with the first folder's (two-sample Kolmogorov–Smirnov
distance D, of values rounded to 1e-4, against its 5 % critical value). Run it on folders of both loaders — nnU-Net's (`nnunet_replay.py
--batches-only`, KEEP_BATCHES=1) and nnseg's (`TrainingBenchmark dump`) — for the same plans.

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
    first = None
    for folder in arguments:
        configuration = json.load(open(os.path.join(folder, "plans.json")))["configurations"]["3d_fullres"]
        batch, patch = configuration["batch_size"], configuration["patch_size"]
        files = sorted(f for f in os.listdir(os.path.join(folder, "batches")) if f.endswith(".target"))[:limit]
        vectors, voxels, statistics = [], [], []
        for name in files:
            target = np.fromfile(os.path.join(folder, "batches", name), dtype=np.int16).reshape([batch] + patch)
            data = np.fromfile(os.path.join(folder, "batches", name[:-len(".target")] + ".data"), dtype=np.float32)
            data = data.reshape([batch, -1] + patch)[:, 0]
            for image, sample in zip(data, target):
                inside = [image[sample == label].mean() if (sample == label).any() else np.nan for label in (0, 1, 2)]
                statistics.append([image.mean(), image.std(), np.percentile(image, 1), np.percentile(image, 99)] + inside)
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
        statistics = np.array(statistics)
        if first is None:
            first = statistics
        for k, label in enumerate(STATISTICS):
            column = statistics[:, k][~np.isnan(statistics[:, k])]
            line = f"  {label:>16}: mean {column.mean():+.3f}, sd {column.std():.3f}, quartiles " + \
                   " ".join(f"{q:+.3f}" for q in np.percentile(column, [25, 50, 75]))
            if first is not statistics:
                reference = first[:, k][~np.isnan(first[:, k])]
                line += f"; KS D {ks_distance(reference, column):.3f} (5 % critical " \
                        f"{1.36 * np.sqrt((len(reference) + len(column)) / (len(reference) * len(column))):.3f})"
            print(line)


STATISTICS = ["image mean", "image sd", "image 1st pct", "image 99th pct", "background mean", "label 1 mean", "label 2 mean"]


def ks_distance(a, b, resolution=1e-4):
    """The two-sample Kolmogorov–Smirnov distance: the largest gap between the empirical distribution functions, of
    values rounded to `resolution`. Without the rounding the image mean differs at once: a quarter of the samples are
    plain crops of a whole z-scored case (mean 0), and the mean-preserving transforms (contrast, gamma with retained
    statistics) keep that 0 to 1e-8 in nnseg's double sums but to 1e-7–1e-5 in torch's float32 ones (D ≈ 0.08–0.10,
    gone at this resolution) — a difference of arithmetic, not of the augmentation's law."""
    a, b = np.round(a / resolution) * resolution, np.round(b / resolution) * resolution
    values = np.sort(np.concatenate([a, b]))
    return np.abs(np.searchsorted(np.sort(a), values, side="right") / len(a)
                  - np.searchsorted(np.sort(b), values, side="right") / len(b)).max()


if __name__ == "__main__":
    main()
