#!/usr/bin/env python3
"""nnU-Net's own trainer for one fold with a fixed seed and a short epoch, then its final validation (#25).

Usage: nnunet_train.py <raw dataset folder> <work folder> <fold> <seed> <iterations> [<validation iterations>] [--timing]
       [--epochs N]

--timing: no final validation (the Dice is null) — for training_step.sh, which wants the seconds per iteration only.
--epochs N: N epochs of <iterations> iterations instead of one (nnU-Net's poly learning rate over N epochs, as a
trainer with num_epochs = N); the RESULT line then carries "epochs".

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
Plans and preprocesses once per work folder (nnUNetv2_plan_and_preprocess -c 3d_fullres), trains nnUNetTrainer for
one epoch of <iterations> iterations on the CPU (as nnUNetv2_train with a 1-epoch trainer: the poly learning rate
stays at 0.01 for epoch 0), validates the fold, and prints one line 'RESULT <json>': seed, Dice per class, seconds per iteration.
The seed fixes torch's initialisation and the main process' numpy/random state; nnU-Net does not seed its
augmentation workers, so two runs with one seed differ there, as they do in nnU-Net itself.
"""
import json
import os
import random
import sys
import time


def main():
    timing_only = "--timing" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--timing"]
    epochs = 1
    if "--epochs" in args:
        at = args.index("--epochs")
        epochs = int(args[at + 1])
        del args[at:at + 2]
    raw, work, fold, seed, iterations = args[0], args[1], args[2], int(args[3]), int(args[4])
    val_iterations = int(args[5]) if len(args) > 5 else 50
    results = os.path.join(work, f"results_seed{seed}")
    os.environ.update(nnUNet_results=results, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
                      nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "2"),
                      nnUNet_n_proc_DA=os.environ.get("nnUNet_n_proc_DA", "2"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nnunet_seeded import prepare
    from spread_runs import run_line
    name = prepare(raw, work)
    plans_file = os.path.join(os.environ["nnUNet_preprocessed"], name, "nnUNetPlans.json")

    import numpy as np  # after the environment: nnunetv2.paths reads it at import
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with open(plans_file) as f:
        plans = json.load(f)
    plans["continue_training"] = False  # what nnUNetv2_train adds before it builds the trainer
    with open(os.path.join(os.environ["nnUNet_preprocessed"], name, "dataset.json")) as f:
        dataset_json = json.load(f)
    trainer = nnUNetTrainer(plans, "3d_fullres", int(fold) if fold != "all" else fold, dataset_json, device=torch.device("cpu"))
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = val_iterations

    # Seconds per training iteration as a user sees them: from the end of one train_step to the end of the next, so
    # waiting for the augmentation workers counts (the validation iterations and the final validation do not).
    step_times = []
    last_end = [None]
    original_step = trainer.train_step

    def timed_step(batch):
        out = original_step(batch)
        now = time.perf_counter()
        if last_end[0] is not None:
            step_times.append(now - last_end[0])
        last_end[0] = now
        return out

    trainer.train_step = timed_step
    start = time.perf_counter()
    trainer.run_training()
    train_seconds = time.perf_counter() - start
    dice = None
    if not timing_only:
        trainer.perform_actual_validation(False)
        with open(os.path.join(trainer.output_folder, "validation", "summary.json")) as f:
            summary = json.load(f)
        dice = {label: values["Dice"] for label, values in summary["mean"].items()}
    step_times.sort()
    result = run_line("nnU-Net", "fp32", seed, iterations, epochs, dice, train_seconds=round(train_seconds, 1),
                      seconds_per_iteration=round(step_times[len(step_times) // 2], 3) if step_times else None)
    print("RESULT " + json.dumps(result), flush=True)


# nnU-Net's augmentation and export workers are spawned: they import this file again, which must not train.
if __name__ == "__main__":
    main()
