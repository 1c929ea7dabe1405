#!/usr/bin/env python3
"""Record fp32 network outputs of the reference nnU-Net model (torch, CPU) on one sliding-window tile.

The stage files in shared/reference hold logits *after* nnU-Net's float16 accumulation (spec §8.5), so
they are only fp16-precise. To check the Swift network itself at 1e-3 (and better), this records
`net(tile)` in float32, where `tile` is the first sliding-window tile of the preprocessed case, padded
exactly as nnU-Net pads (constant 0, extra voxel at the high end).

    /tmp/ref/bin/python Ops/golden/make_network_logits.py ../shared Fixtures/golden/network
"""
import json
import os
import sys

import numpy as np
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans


def main(shared, out_dir):
    torch.set_num_threads(2)
    model = os.path.join(shared, "reference/Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
    plans = json.load(open(os.path.join(model, "plans.json")))
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 input_channels=1, output_channels=3, allow_init=True, deep_supervision=False)
    ckpt = torch.load(os.path.join(model, "fold_0/checkpoint_final.pth"), map_location="cpu", weights_only=False)
    net.load_state_dict(ckpt["network_weights"])
    net.eval()
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    os.makedirs(out_dir, exist_ok=True)
    for case in ["hippocampus_017", "hippocampus_164"]:
        pre = np.load(os.path.join(shared, f"reference/Dataset004_Hippocampus/predictions/stages/{case}.npz"))["preprocessed"]
        shape = pre.shape[1:]
        pads = [(0, 0)]
        for s, p in zip(shape, patch):
            diff = max(p - s, 0)
            pads.append((diff // 2, diff // 2 + diff % 2))
        padded = np.pad(pre, pads, mode="constant", constant_values=0)
        tile = padded[:, : patch[0], : patch[1], : patch[2]][None].astype(np.float32)
        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(tile))).numpy()[0]
        np.save(os.path.join(out_dir, f"{case}_tile0_logits.npy"), logits.astype("<f4"))
        json.dump({"case": case, "preprocessed_shape": list(shape), "pad": pads[1:], "tile_start": [0, 0, 0],
                   "patch": patch, "torch": torch.__version__}, open(os.path.join(out_dir, f"{case}_tile0.json"), "w"), indent=1)
        print(case, tile.shape, logits.shape, float(np.abs(logits).max()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
