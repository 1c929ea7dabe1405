#!/usr/bin/env python3
"""Golden law of nnU-Net's initial weights (#25): per tensor of the Hippocampus 3d_fullres network, as nnU-Net 2.8.1
builds it from the reference plans (`get_network_from_plans(..., allow_init=True)`: PlainConvUNet with
InitWeights_He(1e-2) on every convolution and transposed convolution, biases 0, instance-norm γ 1 / β 0), the mean,
standard deviation and kurtosis of its values pooled over torch seeds 0–19, with its shape and count. `TrainingNetworkTests` checks
nnseg's `.kaiming(seed:)` tensor by tensor against it: a wrong gain, fan-in (transposed convolutions count the output
channels) or constant shows as a ratio of standard deviations many standard errors from 1.

    /tmp/ref/bin/python Ops/golden/make_init_law_golden.py ../shared/reference/Dataset004_Hippocampus/nnUNetPlans.json \
        Fixtures/golden/training/init_law.json
"""
import json
import sys

import numpy as np
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

SEEDS = range(20)


def main():
    plans_path, out = sys.argv[1], sys.argv[2]
    with open(plans_path) as f:
        plans = json.load(f)
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    values = {}
    for seed in SEEDS:
        torch.manual_seed(seed)
        network = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                         architecture["_kw_requires_import"], 1, 3, allow_init=True, deep_supervision=True)
        for name, tensor in network.state_dict().items():
            # The decoder holds the encoder too (decoder.encoder.*): one name per tensor, as nnseg's state dict has it.
            if name.startswith("decoder.encoder.") or ".all_modules." in name:
                continue
            values.setdefault(name, []).append(tensor.detach().double().numpy().ravel())
    tensors = []
    for name, draws in values.items():
        pooled = np.concatenate(draws)
        shape = list(network.state_dict()[name].shape)
        tensors.append({"name": name, "shape": shape, "count": int(pooled.size // len(SEEDS)),
                        "mean": float(pooled.mean()), "sd": float(pooled.std()),
                        "kurtosis": float(((pooled - pooled.mean()) ** 4).mean() / pooled.var() ** 2) if pooled.std() > 0 else 0.0})
    with open(out, "w") as f:
        json.dump({"seeds": len(SEEDS), "plans": "Dataset004_Hippocampus 3d_fullres", "tensors": tensors}, f, indent=1)
    print(f"{len(tensors)} tensors, {len(SEEDS)} seeds → {out}")


if __name__ == "__main__":
    main()
