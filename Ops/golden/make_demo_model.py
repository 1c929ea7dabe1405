#!/usr/bin/env python3
"""Make the demo model bundle in Fixtures/demo/model from the reference Hippocampus model.

    /tmp/ref/bin/python Ops/golden/make_demo_model.py ../shared Fixtures/demo/model

Weights only, float16 (to keep Fixtures small), the canonical (deduplicated) state-dict names, plus the
keys nnseg and nnU-Net read at inference: init_args.configuration, trainer_name,
inference_allowed_mirroring_axes. plans.json and dataset.json are copied unchanged.
"""
import os
import shutil
import sys

import torch


def main(shared, out):
    src = os.path.join(shared, "reference/Dataset004_Hippocampus/model/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
    os.makedirs(os.path.join(out, "fold_0"), exist_ok=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    ckpt = torch.load(os.path.join(src, "fold_0/checkpoint_final.pth"), map_location="cpu", weights_only=False)
    weights = {k: v.half().clone() for k, v in ckpt["network_weights"].items()
               if ".all_modules." not in k and not k.startswith("decoder.encoder.")}
    torch.save({"network_weights": weights, "init_args": {"configuration": ckpt["init_args"]["configuration"], "fold": 0},
                "trainer_name": ckpt["trainer_name"], "current_epoch": ckpt["current_epoch"],
                "inference_allowed_mirroring_axes": ckpt["inference_allowed_mirroring_axes"]},
               os.path.join(out, "fold_0/checkpoint_final.pth"))
    print(len(weights), "tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
