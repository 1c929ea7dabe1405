#!/usr/bin/env python3
"""Records, per training sample, every random draw nnU-Net's loader and training transforms make, with the sample
they produce (#25), so that `TrainingBenchmark augreplay <out> <preprocessed dataset>` can give the same draws to
nnseg's loader and augmenter and compare the two samples voxel by voxel. The goldens of DataPipelineTests compare
each transform alone for a few fixed parameters on one case; this compares the whole pipeline (crop, spatial,
noise, blur, brightness, contrast, low resolution, both gammas, mirroring, −1 → 0) for the parameters nnU-Net
actually draws, over every training case it picks.

Usage: nnunet_augmentation_log.py <nnU-Net work folder (WORK/nnunet of training_seed_spread.sh)> <dataset name> <seed>
       <batches> <out>

Writes to <out>: samples.jsonl (one line per sample: case, forced foreground, crop corner, spatial angles and scale,
the parameters of every intensity transform applied, mirrored axes), and per sample NNNNN.data (float32 patch, C
order), NNNNN.target (int16 full-resolution target) and, where Gaussian noise was applied, NNNNN.noise (float32, the
noise field it added).

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
"""
import json
import os
import sys


def main():
    work, name, seed, batches, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nnunet_seeded import seeded_trainer
    trainer, _ = seeded_trainer(work, name, seed, "results_augmentation_log")
    import numpy as np
    import torch
    import batchgeneratorsv2.transforms.spatial.spatial as spatial_module
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
    from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    os.makedirs(out, exist_ok=True)
    loader, _ = trainer.get_dataloaders()  # nnUNet_n_proc_DA=0: one process, seeded by seeded_trainer
    dl = loader.data_loader if hasattr(loader, "data_loader") else loader
    records, current = [], {}

    def plain(x):
        if isinstance(x, torch.Tensor):
            return x.tolist()
        if isinstance(x, np.ndarray):
            return x.tolist()
        return x

    load_case = dl._data.load_case

    def logged_load_case(identifier):
        # a sample's record is complete when the next case is loaded (or its batch is returned)
        if current:
            records.append(dict(current))
        current.clear()
        current.update(case=identifier)
        return load_case(identifier)
    dl._data.load_case = logged_load_case

    get_bbox = dl.get_bbox

    def logged_get_bbox(shape, force_fg, class_locations, *args, **kwargs):
        lbs, ubs = get_bbox(shape, force_fg, class_locations, *args, **kwargs)
        current.update(force_fg=bool(force_fg), corner=[int(v) for v in lbs], shape=[int(v) for v in shape])
        return lbs, ubs
    dl.get_bbox = logged_get_bbox

    affine_arguments = []
    create_affine = spatial_module.create_affine_matrix_3d

    def logged_create_affine(angles, scales):
        affine_arguments.append(([float(a) for a in angles], [float(s) for s in scales]))
        return create_affine(angles, scales)
    spatial_module.create_affine_matrix_3d = logged_create_affine

    def wrap_parameters(transform, record):
        original = transform.get_parameters

        def logged(**data_dict):
            params = original(**data_dict)
            record(params)
            return params
        transform.get_parameters = logged

    def record_spatial(params):
        if params["affine"] is None:
            current["spatial"] = None
        else:
            angles, scales = affine_arguments[-1]
            current["spatial"] = {"angles": angles, "scales": scales}
        affine_arguments.clear()

    def record_noise(transform):
        original = transform._apply_to_image

        def logged(img, **params):
            before = img.clone()
            result = original(img, **params)
            current["noise"] = True
            current["_noise"] = (result - before).numpy().astype(np.float32)
            return result
        transform._apply_to_image = logged

    def per_channel(key):
        def record(params):
            current[key] = {"channels": [int(c) for c in plain(params["apply_to_channel"])],
                            "values": [float(v) for v in plain(params["multipliers"])]}
        return record

    def record_blur(params):
        applied = [i for i, a in enumerate(plain(params["apply_to_channel"])) if a]
        current["blur"] = {"channels": applied, "sigmas": [[float(s) for s in sig] for sig in params["sigmas"]]}

    def record_lowres(params):
        current["low_resolution"] = {"channels": [int(c) for c in plain(params["apply_to_channel"])],
                                     "scales": [[float(s) for s in row] for row in plain(params["scales"])]}

    def record_gamma(key):
        def record(params):
            current[key] = {"channels": [int(c) for c in plain(params["apply_to_channel"])],
                            "gamma": [float(g) for g in plain(params["gamma"])],
                            "invert": [bool(v) for v in plain(params["invert_image"])],
                            "retain_stats": [bool(v) for v in plain(params["retain_stats"])]}
        return record

    for t in dl.transforms.transforms:
        inner = t.transform if isinstance(t, RandomTransform) else t
        if isinstance(inner, SpatialTransform):
            wrap_parameters(inner, record_spatial)
        elif isinstance(inner, GaussianNoiseTransform):
            record_noise(inner)
        elif isinstance(inner, GaussianBlurTransform):
            wrap_parameters(inner, record_blur)
        elif isinstance(inner, MultiplicativeBrightnessTransform):
            wrap_parameters(inner, per_channel("brightness"))
        elif isinstance(inner, ContrastTransform):
            wrap_parameters(inner, per_channel("contrast"))
        elif isinstance(inner, SimulateLowResolutionTransform):
            wrap_parameters(inner, record_lowres)
        elif isinstance(inner, GammaTransform):
            wrap_parameters(inner, record_gamma("gamma_inverted" if inner.p_invert_image == 1 else "gamma"))
        elif isinstance(inner, MirrorTransform):
            wrap_parameters(inner, lambda params: current.update(mirror=[int(a) for a in params["axes"]]))

    index = 0
    with open(os.path.join(out, "samples.jsonl"), "w") as f:
        for b in range(batches):
            batch = next(loader)
            records.append(dict(current))
            current.clear()
            data, target = batch["data"].numpy().astype(np.float32), batch["target"][0][:, 0].numpy().astype(np.int16)
            assert len(records) == data.shape[0], (len(records), data.shape)
            for j, record in enumerate(records):
                stem = f"{index:05d}"
                data[j].tofile(os.path.join(out, stem + ".data"))
                target[j].tofile(os.path.join(out, stem + ".target"))
                noise = record.pop("_noise", None)
                if noise is not None:
                    noise.tofile(os.path.join(out, stem + ".noise"))
                record["sample"] = index
                record["batch"] = b
                record["patch"] = list(data.shape[2:])
                f.write(json.dumps(record) + "\n")
                index += 1
            records.clear()
            if (b + 1) % 10 == 0 or b + 1 == batches:
                print(f"batch {b + 1}/{batches}", flush=True)
    print(f"{index} samples of nnU-Net's loader (seed {seed}) in {out}", flush=True)


if __name__ == "__main__":
    main()
