"""nnU-Net's trainer for fold 0 of a preprocessed dataset, seeded, its loader in this process — shared by the bench
scripts that look at what nnU-Net's training does (nnunet_train.py, nnunet_batch_stats.py, nnunet_replay.py; #25).

`python3 nnunet_seeded.py prepare <raw dataset folder> <work folder>` plans and preprocesses the work folder (for the
shell scripts).

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
"""
import json
import os
import random
import subprocess
import sys


def prepare(raw, work):
    """WORK/nnunet as nnU-Net wants it: raw/<name> linked to the raw dataset folder, preprocessed/ planned and
    preprocessed for 3d_fullres (nnUNetv2_plan_and_preprocess, once per work folder). Sets nnUNet_raw and
    nnUNet_preprocessed; returns the dataset name."""
    name = os.path.basename(os.path.normpath(raw))
    os.environ.update(nnUNet_raw=os.path.join(work, "raw"), nnUNet_preprocessed=os.path.join(work, "preprocessed"))
    os.makedirs(os.environ["nnUNet_raw"], exist_ok=True)
    link = os.path.join(os.environ["nnUNet_raw"], name)
    if not os.path.exists(link):
        os.symlink(os.path.abspath(raw), link)
    if not os.path.exists(os.path.join(os.environ["nnUNet_preprocessed"], name, "nnUNetPlans_3d_fullres")):
        dataset_id = int(name[len("Dataset"):len("Dataset") + 3])
        bindir = os.path.dirname(sys.executable)
        subprocess.run([os.path.join(bindir, "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres", "-np", "2"],
                       check=True, stdout=subprocess.DEVNULL)
    return name


def seeded_trainer(work, name, seed, results):
    """The initialised nnUNetTrainer (3d_fullres, fold 0, CPU) and its plans, after seeding random, numpy and torch.

    `work` is training_seed_spread.sh's nnU-Net work folder (WORK/nnunet, with raw/ and preprocessed/); `results` the
    results subfolder for whatever the trainer writes. Augmentation runs in this process (nnUNet_n_proc_DA=0), so
    the seed fixes the batches too."""
    os.environ.update(nnUNet_raw=os.path.join(work, "raw"), nnUNet_preprocessed=os.path.join(work, "preprocessed"),
                      nnUNet_results=os.path.join(work, results), nnUNet_n_proc_DA="0",
                      OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    import numpy as np  # after the environment: nnunetv2.paths reads it at import
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with open(os.path.join(work, "preprocessed", name, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    plans["continue_training"] = False  # what nnUNetv2_train adds before it builds the trainer
    with open(os.path.join(work, "preprocessed", name, "dataset.json")) as f:
        dataset_json = json.load(f)
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    return trainer, plans


if __name__ == "__main__" and sys.argv[1:2] == ["prepare"]:
    print(prepare(sys.argv[2], sys.argv[3]))
