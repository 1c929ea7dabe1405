#!/usr/bin/env python3
"""Golden outputs of nnU-Net's intensity augmentations (batchgeneratorsv2, configured as nnUNetTrainer 2.8.1 does:
Gaussian blur, multiplicative brightness, contrast with the range preserved, simulated low resolution, gamma with
and without inversion, statistics retained) for fixed parameters (#25).

The input is the centre patch (40 × 56 × 40) of a real Hippocampus case: `image0` of `spatial.npz`
(make_spatial_golden.py). The transforms' random parameters are replaced by fixed ones (callables, probability 1 per
channel), so the same parameters can be given to nnseg's augmenter. Writes `intensity.npz`: `input`, and per case
`<name>` (the output) and `<name>_parameters`.

    /tmp/ref/bin/python Ops/golden/make_intensity_golden.py Fixtures/golden/augmentation
"""
import os
import sys

import numpy as np
import torch
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform


def fixed(value):
    return lambda *arguments, **keywords: value


def blur(sigmas):
    # sample_scalar(blur_sigma, shape, dim=i + 1) per spatial axis i
    return GaussianBlurTransform(blur_sigma=lambda shape, dim: sigmas[dim - 1], synchronize_channels=False,
                                 synchronize_axes=False, p_per_channel=1, benchmark=False)


CASES = {
    # name: (transform, parameters as nnseg takes them)
    "blur_small": (blur([0.52, 0.55, 0.58]), [0.52, 0.55, 0.58]),
    "blur_mid": (blur([0.6, 0.75, 0.9]), [0.6, 0.75, 0.9]),
    "blur_large": (blur([0.85, 0.88, 1.0]), [0.85, 0.88, 1.0]),
    "brightness": (MultiplicativeBrightnessTransform(multiplier_range=fixed(1.17), synchronize_channels=False,
                                                     p_per_channel=1), [1.17]),
    "contrast_up": (ContrastTransform(contrast_range=fixed(1.2), preserve_range=True, synchronize_channels=False,
                                      p_per_channel=1), [1.2]),
    "contrast_down": (ContrastTransform(contrast_range=fixed(0.8), preserve_range=True, synchronize_channels=False,
                                        p_per_channel=1), [0.8]),
    "lowres_0.5": (SimulateLowResolutionTransform(scale=fixed(0.5), synchronize_channels=False, synchronize_axes=True,
                                                  ignore_axes=None, allowed_channels=None, p_per_channel=1), [0.5]),
    "lowres_0.73": (SimulateLowResolutionTransform(scale=fixed(0.73), synchronize_channels=False, synchronize_axes=True,
                                                   ignore_axes=None, allowed_channels=None, p_per_channel=1), [0.73]),
    "gamma": (GammaTransform(gamma=fixed(1.3), p_invert_image=0, synchronize_channels=False, p_per_channel=1,
                             p_retain_stats=1), [1.3]),
    "gamma_inverted": (GammaTransform(gamma=fixed(0.8), p_invert_image=1, synchronize_channels=False, p_per_channel=1,
                                      p_retain_stats=1), [0.8]),
}


def main():
    out = sys.argv[1]
    spatial = np.load(os.path.join(out, "spatial.npz"))
    patch = spatial["image0"].astype(np.float32)
    arrays = {"input": patch}
    for name, (transform, parameters) in CASES.items():
        result = transform(image=torch.from_numpy(patch.copy()[None]))["image"][0].numpy().astype(np.float32)
        arrays[name] = result
        arrays[name + "_parameters"] = np.array(parameters, dtype=np.float32)
        print(f"{name}: {parameters}, mean {result.mean():.4f}, max |change| {np.abs(result - patch).max():.4f}")
    np.savez_compressed(os.path.join(out, "intensity.npz"), **arrays)


if __name__ == "__main__":
    main()
