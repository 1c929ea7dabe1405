#!/usr/bin/env python3
"""Records what nnU-Net's trainer does on fixed inputs, for nnseg to replay (#25): its initial weights, <iterations>
augmented training batches of fold 0 (its loader and training transforms, one process, seeded) and its loss at each
of those iterations (its own train_step: forward, deep-supervision Dice + CE, backward, clipping, SGD-Nesterov at the
learning rate of epoch 0). `TrainingBenchmark replay <out>` then trains nnseg from the same weights on the same
batches and prints both losses side by side: equal curves mean the two trainers do the same thing with the same
data, so any difference in what they learn comes from the batches they draw.

Usage: nnunet_replay.py <nnU-Net work folder of training_seed_spread.sh (WORK/nnunet)> <dataset name> <seed> <iterations> <out>
       [--validate | --batches-only | --init-only]

Writes to <out>: init.pth ({'network_weights': state_dict}, as nnU-Net's checkpoints hold them), plans.json,
batches/NNNNN.data (float32, batch × 1 × patch, C order) and batches/NNNNN.target (int16, batch × patch: the
full-resolution target; nnseg downsamples it for the deeper heads as nnU-Net's transform does), ds/NNNNN.target<k>
(the deeper heads' targets nnU-Net computed, for checking that downsampling), losses.json (nnU-Net's loss per
iteration) and final.pth (its weights after the last iteration, readable by nnseg train --val).
--validate: then nnU-Net's own validation of fold 0 with those weights (sliding window, 52 cases), Dice per class
into validation.json.
--batches-only: the initial weights and the batches without nnU-Net's training steps (minutes instead of an hour:
the loader draws the same batches either way, as the training step draws no random numbers), for replaying more
seeds with nnseg's step alone.
--init-only: the initial weights (and plans.json) alone, for training them on nnseg's batches (`TrainingBenchmark
dump … <out>/init.pth`, training_replay_spread.sh with BATCHES=nnseg).

Runs in the reference Python environment (REF_PYTHON: torch + nnunetv2 2.8.1); never used by nnseg itself.
"""
import json
import os
import sys
import time


def main():
    validate, batches_only, init_only = ("--validate" in sys.argv, "--batches-only" in sys.argv,
                                         "--init-only" in sys.argv)
    args = [a for a in sys.argv[1:] if a not in ("--validate", "--batches-only", "--init-only")]
    work, name, seed, iterations, out = args[0], args[1], int(args[2]), int(args[3]), args[4]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nnunet_seeded import seeded_trainer
    trainer, plans = seeded_trainer(work, name, seed, "results_replay")
    import numpy as np  # after seeded_trainer: nnunetv2 reads the environment it sets at import
    import torch
    os.makedirs(os.path.join(out, "batches"), exist_ok=True)
    os.makedirs(os.path.join(out, "ds"), exist_ok=True)
    with open(os.path.join(out, "plans.json"), "w") as f:
        json.dump(plans, f)
    torch.save({"network_weights": trainer.network.state_dict()}, os.path.join(out, "init.pth"))
    if init_only:
        print(f"the initial weights of seed {seed} in {out}", flush=True)
        return

    loader, _ = trainer.get_dataloaders()  # nnUNet_n_proc_DA=0: single-threaded, seeded by the calls above
    trainer.network.train()
    trainer.current_epoch = 0
    trainer.lr_scheduler.step(0)  # poly schedule, epoch 0: 0.01
    losses, seconds = [], []
    for i in range(iterations):
        batch = next(loader)
        batch["data"].numpy().astype(np.float32).tofile(os.path.join(out, "batches", f"{i:05d}.data"))
        batch["target"][0][:, 0].numpy().astype(np.int16).tofile(os.path.join(out, "batches", f"{i:05d}.target"))
        for k, t in enumerate(batch["target"][1:], start=1):
            t[:, 0].numpy().astype(np.int16).tofile(os.path.join(out, "ds", f"{i:05d}.target{k}"))
        if not batches_only:
            start = time.perf_counter()
            losses.append(float(trainer.train_step(batch)["loss"]))
            seconds.append(time.perf_counter() - start)
            print(f"iteration {i + 1}/{iterations}: loss {losses[-1]:.4f} ({seconds[-1]:.1f} s)", flush=True)
        with open(os.path.join(out, "losses.json"), "w") as f:
            json.dump({"seed": seed, "learning_rate": trainer.optimizer.param_groups[0]["lr"], "loss": losses,
                       "seconds": seconds, "batches": i + 1}, f)
    if batches_only:
        print(f"{iterations} batches and the initial weights in {out}", flush=True)
        return
    # With what inference reads beside the weights, so that nnseg train --val validates it as a fold too.
    torch.save({"network_weights": trainer.network.state_dict(), "init_args": {"configuration": "3d_fullres"},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}, os.path.join(out, "final.pth"))
    if validate:
        trainer.perform_actual_validation(False)
        with open(os.path.join(trainer.output_folder, "validation", "summary.json")) as f:
            summary = json.load(f)
        dice = {label: values["Dice"] for label, values in summary["mean"].items()}
        with open(os.path.join(out, "validation.json"), "w") as f:
            json.dump({"seed": seed, "iterations": iterations, "dice": dice}, f)
        print("validation Dice (nnU-Net's weights after the replayed iterations): " + json.dumps(dice), flush=True)


if __name__ == "__main__":
    main()
