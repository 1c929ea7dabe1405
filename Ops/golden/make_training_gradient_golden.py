#!/usr/bin/env python3
"""Golden loss and gradients of nnU-Net's training step (torch, CPU, float64) for small PlainConvUNets.

For each case: a PlainConvUNet (dynamic-network-architectures, deep supervision on) initialised with
nnU-Net's InitWeights_He(1e-2), norm affine parameters and biases set to random values so every term is
exercised; a random input and label map; the loss exactly as nnUNetTrainer._build_loss builds it
(DC_and_CE_loss with MemoryEfficientSoftDiceLoss, batch_dice as given, optional ignore label, wrapped in
DeepSupervisionWrapper with nnU-Net's weights; targets downsampled with nearest-exact as
DownsampleSegForDSTransform does). Region cases ("regions" in the name) use DC_and_BCE_loss (sigmoid, do_bg
true) on ConvertSegmentationToRegions targets (one channel per region, plus the ignore mask when the dataset
has an ignore label), as nnUNetTrainer._build_loss does for region-based datasets. The net runs in float64 so the Swift float32 result can be checked
tightly. Writes `CASE.npz` with the float32 weights (`w:<name>`), `x`, `target`, `loss` and float64
gradients rounded to float32 (`g:<name>`; parameters without a gradient are absent).

The case "plain3d_sgd" goes on past the gradients (#25): five steps of nnU-Net's optimizer as nnUNetTrainer.train_step
runs them (SGD lr 0.01, momentum 0.99, Nesterov, weight decay 3e-5; gradients clipped to a norm, here 0.5 instead of
12 so that clipping acts on this small network), each on a new random batch; it writes every step's input
(`x<k>`), labels (`target<k>`), loss (`loss<k>`, before the update) and gradient norm before clipping (`norm<k>`),
and the weights after the last step (`final:<name>`).

    /tmp/ref/bin/python Ops/golden/make_training_gradient_golden.py Fixtures/golden/training [CASE…]
"""
import os
import sys

import numpy as np
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from torch import nn

CASES = {
    # name: (dim, features, patch, batch, batch_dice, ignore_label, classes); "resenc" names build a
    # ResidualEncoderUNet (blocks 1, 2, 2, 2; stride-only and projection skips).
    "plain3d": (3, [16, 16, 16, 32], [8, 16, 8], 2, False, None, 3),
    "plain2d_batchdice_ignore": (2, [8, 16, 16, 16], [16, 24], 3, True, 3, 3),
    "resenc3d": (3, [16, 16, 16, 32], [8, 16, 8], 2, False, None, 3),
    # Region cases: labels 0..2 (and 3 = ignore), regions (1, 2) and (2,): two sigmoid outputs.
    "plain3d_regions": (3, [16, 16, 16, 32], [8, 16, 8], 2, False, None, 3),
    "plain2d_regions_batchdice_ignore": (2, [8, 16, 16, 16], [16, 24], 3, True, 3, 3),
}
REGIONS = [(1, 2), (2,)]


def plain_unet(dim, features, heads):
    """nnU-Net's PlainConvUNet for these cases: 3-wide kernels, stride 2 after the first stage, two convs per stage."""
    n = len(features)
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    return PlainConvUNet(1, n, features, conv, 3, [1] + [2] * (n - 1), [2] * n, heads, [2] * (n - 1),
                         conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def deep_supervision_weights(levels):
    """nnU-Net's weights of the deep-supervision outputs: 1/2^i, the lowest resolution 0, normalised."""
    w = np.array([1 / (2 ** i) for i in range(levels)])
    w[-1] = 0
    return w / w.sum()


def main(out_dir, only=None):
    torch.set_num_threads(2)
    for name, (dim, features, patch, batch, batch_dice, ignore, classes) in CASES.items():
        if only and name not in only:
            continue
        regions = "regions" in name
        heads = len(REGIONS) if regions else classes
        torch.manual_seed(1234)
        rng = np.random.default_rng(1234)
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
        n = len(features)
        if name.startswith("resenc"):
            net = ResidualEncoderUNet(1, n, features, conv, 3, [1] + [2] * (n - 1), [1, 2, 2, 2][:n], heads, [1] * (n - 1),
                                      conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                                      nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)
        else:
            net = plain_unet(dim, features, heads)
        net.apply(InitWeights_He(1e-2))
        with torch.no_grad():
            for k, p in net.named_parameters():
                if p.ndim == 1:
                    p.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()
                   if "all_modules" not in k and not k.startswith("decoder.encoder.")}
        net = net.double()
        x = rng.uniform(-1, 1, [batch, 1] + patch).astype(np.float32)
        labels = rng.integers(0, classes + (1 if ignore is not None else 0), [batch, 1] + patch).astype(np.int16)
        outputs = net(torch.from_numpy(x).double())
        scales = [[1.0] * dim]
        for s in range(1, n - 1):
            scales.append([1.0 / 2 ** s] * dim)
        full = torch.from_numpy(labels).double()
        if regions:
            # ConvertSegmentationToRegions: one channel per region, then the ignore mask as the last channel.
            channels = [torch.isin(full, torch.tensor(r, dtype=torch.double)).double() for r in REGIONS]
            if ignore is not None:
                channels.append((full == ignore).double())
            full = torch.cat(channels, 1)
        targets = []
        for sc in scales:
            shape = [round(p * f) for p, f in zip(patch, sc)]
            t = torch.nn.functional.interpolate(full, size=shape, mode="nearest-exact")
            targets.append(t)
        if regions:
            loss = DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
                                   use_ignore_label=ignore is not None, dice_class=MemoryEfficientSoftDiceLoss)
        else:
            loss = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                                  weight_dice=1, ignore_label=ignore, dice_class=MemoryEfficientSoftDiceLoss)
        w = deep_supervision_weights(len(scales))
        value = DeepSupervisionWrapper(loss, w)(outputs, targets)
        value.backward()
        out = {"x": x, "target": labels[:, 0], "loss": np.array([value.item()])}
        for k, v in weights.items():
            out["w:" + k] = v
        for k, p in net.named_parameters():
            if p.grad is not None:
                out["g:" + k] = p.grad.numpy().astype(np.float32)
        np.savez_compressed(os.path.join(out_dir, name + ".npz"), **out)
        print(name, value.item(), sum(1 for k in out if k.startswith("g:")), "gradients")
    if not only or "plain3d_sgd" in only:
        sgd_steps(out_dir)


def sgd_steps(out_dir, steps=5, clip=0.5):
    """Five optimizer steps of nnU-Net's train_step on the plain3d network, in float64."""
    dim, features, patch, batch, classes = 3, [16, 16, 16, 32], [8, 16, 8], 2, 3
    torch.manual_seed(4321)
    rng = np.random.default_rng(4321)
    n = len(features)
    net = plain_unet(dim, features, classes)
    net.apply(InitWeights_He(1e-2))
    keep = lambda k: "all_modules" not in k and not k.startswith("decoder.encoder.")
    out = {"w:" + k: v.detach().numpy().copy() for k, v in net.state_dict().items() if keep(k)}
    net = net.double()
    optimizer = torch.optim.SGD(net.parameters(), 0.01, weight_decay=3e-5, momentum=0.99, nesterov=True)
    loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1, weight_dice=1,
                          ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    loss = DeepSupervisionWrapper(loss, deep_supervision_weights(n - 1))
    for k in range(steps):
        x = rng.uniform(-1, 1, [batch, 1] + patch).astype(np.float32)
        # Labels in blobs, not noise, so that the steps learn something: a sphere (2) in a shell (1) at a random centre.
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, p) for p in patch], indexing="ij"))
        labels = np.zeros([batch, 1] + patch, dtype=np.int16)
        for b in range(batch):
            c = rng.uniform(-0.5, 0.5, 3)
            r = np.sqrt(((grid - c[:, None, None, None]) ** 2).sum(0))
            labels[b, 0] = np.where(r < 0.4, 2, np.where(r < 0.8, 1, 0))
        full = torch.from_numpy(labels).double()
        targets = [torch.nn.functional.interpolate(full, size=[round(p / 2 ** s) for p in patch], mode="nearest-exact")
                   for s in range(n - 1)]
        optimizer.zero_grad(set_to_none=True)
        value = loss(net(torch.from_numpy(x).double()), targets)
        value.backward()
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        out[f"x{k}"], out[f"target{k}"] = x, labels[:, 0]
        out[f"loss{k}"], out[f"norm{k}"] = np.array([value.item()]), np.array([norm.item()])
        print(f"plain3d_sgd step {k}: loss {value.item():.6f}, gradient norm {norm.item():.4f}")
    for k, v in net.state_dict().items():
        if keep(k):
            out["final:" + k] = v.numpy().astype(np.float32)
    np.savez_compressed(os.path.join(out_dir, "plain3d_sgd.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
