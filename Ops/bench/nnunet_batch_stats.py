#!/usr/bin/env python3
"""What nnU-Net's training loader shows the network (#25): voxel share per label, samples without foreground, and the
intensity mean/sd over <batches> augmented training batches of fold 0 (its data loader and training transforms, one
process). Compare with nnseg's `TrainingBenchmark loader … <batches> <seed>`, which prints the same line.

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
        total += data.sum()
        squares += (data * data).sum()
        values += data.size
    voxels = sum(counts.values())
    mean = total / values
    print("label shares: " + ", ".join(f"{label} {counts[label] / voxels:.4f}" for label in sorted(counts))
          + f"; samples without foreground {empty / samples:.3f}; intensity mean {mean:.3f} sd {(squares / values - mean * mean) ** 0.5:.3f}")


if __name__ == "__main__":
    main()
