#!/usr/bin/env python3
"""What nnU-Net's training loader shows the network (#25): voxel share per label, samples without foreground, the
intensity mean/sd, and second-order figures (neighbour differences, label edges, label presence, padding and tails)
over <batches> augmented training batches of fold 0 (its data loader and training transforms, one process). Compare
with nnseg's `TrainingBenchmark loader … <batches> <seed>`, which prints the same two lines.

Usage: nnunet_batch_stats.py <nnU-Net work folder of training_seed_spread.sh (WORK/nnunet)> <dataset name> <seed> <batches>

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
"""
import os
import sys


def main():
    work, name, seed, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nnunet_seeded import seeded_trainer
    trainer, _ = seeded_trainer(work, name, seed, "results_batch_stats")
    import numpy as np  # after seeded_trainer: nnunetv2 reads the environment it sets at import
    loader, _ = trainer.get_dataloaders()  # nnUNet_n_proc_DA=0: single-threaded, seeded by the calls above
    counts, samples, empty, total, squares, values = {}, 0, 0, 0.0, 0.0, 0
    # Second order, as TrainingBenchmark loader prints it: neighbour squared differences per axis, label edges per
    # neighbour pair, samples containing each label, intensities exactly 0 and beyond ±2 (first channel).
    steps, step_counts, edges, pairs, present, zeros, tails, voxels_seen = [0.0] * 3, [0] * 3, 0, 0, {}, 0, 0, 0
    for _ in range(batches):
        batch = next(loader)
        target = batch["target"][0].numpy()  # full resolution
        data = batch["data"].numpy().astype(np.float64)
        for j in range(target.shape[0]):
            labels, voxels = np.unique(target[j], return_counts=True)
            for label, k in zip(labels, voxels):
                counts[int(label)] = counts.get(int(label), 0) + int(k)
            samples += 1
            empty += 0 if (target[j] > 0).any() else 1
        first = data[:, 0]
        labels_all = target[:, 0]
        for axis in range(3):
            d = np.diff(first, axis=axis + 1)
            steps[axis] += float((d * d).sum())
            step_counts[axis] += d.size
            edges += int((np.diff(labels_all, axis=axis + 1) != 0).sum())
            pairs += d.size
        for j in range(labels_all.shape[0]):
            for label in np.unique(labels_all[j]):
                present[int(label)] = present.get(int(label), 0) + 1
        zeros += int((first == 0).sum())
        tails += int((np.abs(first) > 2).sum())
        voxels_seen += first.size
        total += data.sum()
        squares += (data * data).sum()
        values += data.size
    voxels = sum(counts.values())
    mean = total / values
    print("label shares: " + ", ".join(f"{label} {counts[label] / voxels:.4f}" for label in sorted(counts))
          + f"; samples without foreground {empty / samples:.3f}; intensity mean {mean:.3f} sd {(squares / values - mean * mean) ** 0.5:.3f}")
    print("neighbour squared difference z / y / x " + " / ".join(f"{steps[a] / step_counts[a]:.4f}" for a in range(3))
          + f"; label edges per pair {edges / pairs:.5f}; samples containing label "
          + ", ".join(f"{label} {present[label] / samples:.3f}" for label in sorted(present))
          + f"; intensity exactly 0 {zeros / voxels_seen:.4f}, beyond ±2 {tails / voxels_seen:.4f}")


if __name__ == "__main__":
    main()
