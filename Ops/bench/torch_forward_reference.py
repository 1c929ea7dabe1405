#!/usr/bin/env python3
"""Time torch's forward pass (CPU, 2 threads, fp32, no_grad) for the networks of nnseg's benchmark.

    /tmp/ref/bin/python Ops/bench/torch_forward_reference.py > Ops/bench/torch_forward_reference.json

Networks: the reference Hippocampus model (patch 40x56x40, real weights) and a 3d_fullres-sized
PlainConvUNet (6 stages, features 32..320, kernels 3, strides 1,2,2,2,2,2) on a 128^3 patch.
"""
import json
import os
import platform
import statistics
import sys
import time

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

torch.set_num_threads(2)


def timed(net, x, repeats):
    with torch.no_grad():
        net(x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times), times


def plain(features, strides, in_ch, classes):
    n = len(features)
    return PlainConvUNet(in_ch, n, features, torch.nn.Conv3d, [[3, 3, 3]] * n, strides, [2] * n, classes, [2] * (n - 1),
                         conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}).eval()


def main():
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
           "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip() if os.path.exists("/proc/cpuinfo") else "",
           "networks": {}}
    hip = plain([32, 64, 128, 256], [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 3)
    median, times = timed(hip, torch.randn(1, 1, 40, 56, 40), 10)
    out["networks"]["hippocampus_40x56x40"] = {"median_s": median, "times_s": times}
    big = plain([32, 64, 128, 256, 320, 320], [[1, 1, 1]] + [[2, 2, 2]] * 5, 1, 3)
    median, times = timed(big, torch.randn(1, 1, 128, 128, 128), 3)
    out["networks"]["fullres6_128cubed"] = {"median_s": median, "times_s": times}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
