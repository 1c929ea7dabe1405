#!/usr/bin/env python3
"""In-process nnU-Net per-case prediction time on this machine (for predict_vs_reference.py).
Needs a Python with torch and nnunetv2 (REF_PYTHON); never used by nnseg itself."""
import os
import statistics
import sys
import time

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

torch.set_num_threads(2)
model, ref = sys.argv[1], sys.argv[2]
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=torch.device("cpu"), verbose=False,
                    allow_tqdm=False)
p.initialize_from_trained_model_folder(model, use_folds=(0,), checkpoint_name="checkpoint_final.pth")
for mode, mirror in (("tta", True), ("notta", False)):
    p.use_mirroring = mirror
    for case in sorted(f[:-4] for f in os.listdir(os.path.join(ref, "predictions", "stages")) if f.endswith(".npz")):
        x = torch.from_numpy(np.load(os.path.join(ref, "predictions", "stages", case + ".npz"))["preprocessed"])
        times = []
        for _ in range(3):
            t = time.perf_counter()
            p.predict_logits_from_preprocessed_data(x)
            times.append(time.perf_counter() - t)
        print(f"{mode:6} {case}: {statistics.median(times):.3f} s (sliding window only)")
