#!/usr/bin/env python3
"""What nnU-Net's untrained network computes, for many initial draws (#25) — the torch side of
`TrainingBenchmark initfn`: one JSON line per draw with the same statistics of the full-resolution logits on the first
<batches> batches of a replay folder (per class: mean and standard deviation of the logit, share of voxels won by
argmax, mean softmax probability, soft batch Dice against the labels; the cross-entropy).

Usage: init_function_stats.py <nnU-Net work folder (WORK/nnunet)> <dataset name> <batch folder> <batches>
       (--seeds <first> <count> | <init.pth>…)

--seeds: for each seed, torch.manual_seed(seed) and the network's own initialisation applied again
(`network.apply(network.initialize)`, nnU-Net's InitWeights_He on every convolution; the instance norms stay at
γ = 1, β = 0) — the law of the weights nnU-Net's trainer starts from, many draws in one process. Weights files
(nnunet_replay.py --init-only) are evaluated as they are, to check that both programs compute the same statistics
of the same weights.

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
"""
import json
import os
import sys


def statistics(logits, labels):
    """The record of TrainingBenchmark initfn for logits (N, K, …) and labels (N, …), both float64/int64 numpy."""
    import numpy as np
    k = logits.shape[1]
    z = np.moveaxis(logits, 1, -1).reshape(-1, k)
    y = labels.reshape(-1)
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    p = e / total
    onehot = np.eye(k)[y]
    voxels = z.shape[0]
    mean = z.mean(axis=0)
    return {"mean_logit": mean.tolist(), "sd_logit": np.sqrt(np.maximum((z * z).mean(axis=0) - mean * mean, 0)).tolist(),
            "argmax_share": (np.bincount(z.argmax(axis=1), minlength=k) / voxels).tolist(),
            "mean_probability": p.mean(axis=0).tolist(),
            "soft_dice": (2 * (p * onehot).sum(axis=0) / (p.sum(axis=0) + onehot.sum(axis=0))).tolist(),
            "cross_entropy": float(-(np.log(p[np.arange(voxels), y])).mean())}


def main():
    work, name, folder, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rest = sys.argv[5:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nnunet_seeded import seeded_trainer
    trainer, plans = seeded_trainer(work, name, 0, "results_initfn")
    import numpy as np
    import torch
    configuration = plans["configurations"]["3d_fullres"]
    batch, patch = configuration["batch_size"], configuration["patch_size"]
    inputs = []
    for i in range(batches):
        data = np.fromfile(os.path.join(folder, "batches", f"{i:05d}.data"), dtype=np.float32).reshape([batch, 1] + patch)
        target = np.fromfile(os.path.join(folder, "batches", f"{i:05d}.target"), dtype=np.int16).reshape([batch] + patch)
        inputs.append((torch.from_numpy(data), target.astype(np.int64)))
    network = trainer.network
    network.eval()

    def evaluate():
        with torch.no_grad():
            outputs = [network(x) for x, _ in inputs]
        logits = np.concatenate([(o[0] if isinstance(o, (list, tuple)) else o).double().numpy() for o in outputs])
        return statistics(logits, np.concatenate([y for _, y in inputs]))

    sources = []
    if rest and rest[0] == "--seeds":
        first, count = int(rest[1]), int(rest[2])
        sources += [("seed", s) for s in range(first, first + count)]
        rest = rest[3:]
    sources += [("file", path) for path in rest]
    for kind, value in sources:
        if kind == "seed":
            torch.manual_seed(value)
            network.apply(network.initialize)
            record = evaluate()
            record.update(source=f"torch seed {value}", seed=value)
        else:
            state = torch.load(value, map_location="cpu", weights_only=False)["network_weights"]
            network.load_state_dict(state)
            record = evaluate()
            record.update(source=value)
        print(json.dumps(record, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
