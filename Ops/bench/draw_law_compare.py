#!/usr/bin/env python3
"""Compares the laws of the random draws of nnU-Net's and nnseg's training loaders (#25).

`TrainingBenchmark augreplay` shows that nnseg's sampler and augmenter turn nnU-Net's draws into nnU-Net's samples;
this checks the other half: that nnseg draws with the same law. Inputs are JSON-lines files of per-sample draws —
nnU-Net's from `nnunet_augmentation_log.py` (its folders' samples.jsonl, noise read from the .noise files beside),
nnseg's from `TrainingBenchmark drawlog`. For every transform it prints how often each side applies it and how its
parameters are distributed, against the configured law (nnUNetTrainer 2.8.1's get_training_transforms and data
loader) and against each other: binomial / chi-square / Kolmogorov–Smirnov p-values. With a few thousand samples a
side, a probability off by 0.03 or a parameter range off by a few percent shows as p < 0.01.

Usage: draw_law_compare.py --nnunet <samples.jsonl>... --nnseg <draws.jsonl>... [--patch 40 56 40 --initial 73 80 64]

Runs in the reference Python environment (numpy, scipy); never used by nnseg itself.
"""
import argparse
import collections
import json
import math
import os

import numpy as np
from scipy import stats


def load(paths):
    records = []
    for path in paths:
        folder = os.path.dirname(path)
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r.get("noise") and "noise_sd" not in r:
                    noise = np.fromfile(os.path.join(folder, f"{r['sample']:05d}.noise"), dtype=np.float32)
                    r["noise_sd"] = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
                records.append(r)
    return records


def bgcontrast_cdf(lo, hi):
    """CDF of batchgeneratorsv2's BGContrast((lo, hi)) with lo < 1 < hi: U(lo, 1) or U(1, hi), each with p 0.5."""
    def cdf(x):
        x = np.asarray(x, dtype=float)
        below = np.clip((x - lo) / (1 - lo), 0, 1) * 0.5
        above = np.clip((x - 1) / (hi - 1), 0, 1) * 0.5
        return below + above
    return cdf


def uniform_cdf(lo, hi):
    return lambda x: np.clip((np.asarray(x, dtype=float) - lo) / (hi - lo), 0, 1)


rows = []


def share(name, a, b, p_expected):
    """Occurrences among trials on both sides against the configured probability."""
    (ka, na), (kb, nb) = a, b
    pa = stats.binomtest(ka, na, p_expected).pvalue if na else float("nan")
    pb = stats.binomtest(kb, nb, p_expected).pvalue if nb else float("nan")
    p2 = stats.chi2_contingency([[ka, na - ka], [kb, nb - kb]])[1] if na and nb and 0 < ka + kb < na + nb else float("nan")
    rows.append((name, f"{ka / na:.4f} ({na})" if na else "-", f"{kb / nb:.4f} ({nb})" if nb else "-", f"{p_expected:.4f}", pa, pb, p2))


def law(name, a, b, cdf, expected):
    pa = stats.kstest(a, cdf).pvalue if len(a) else float("nan")
    pb = stats.kstest(b, cdf).pvalue if len(b) else float("nan")
    p2 = stats.ks_2samp(a, b).pvalue if len(a) and len(b) else float("nan")
    rows.append((name, f"{np.mean(a):.4f} ± {np.std(a):.4f} ({len(a)})" if len(a) else "-",
                 f"{np.mean(b):.4f} ± {np.std(b):.4f} ({len(b)})" if len(b) else "-", expected, pa, pb, p2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnunet", nargs="+", required=True)
    ap.add_argument("--nnseg", nargs="+", required=True)
    ap.add_argument("--patch", nargs=3, type=int, default=[40, 56, 40])
    ap.add_argument("--initial", nargs=3, type=int, default=[73, 80, 64])
    ap.add_argument("--rotation-degrees", type=float, default=30)
    args = ap.parse_args()
    sides = [load(args.nnunet), load(args.nnseg)]
    rotation = args.rotation_degrees / 180 * math.pi

    def trials(side, key, cond=lambda r: True):
        n = [r for r in side if cond(r)]
        return sum(1 for r in n if r.get(key)), len(n)

    def applied(r, key):  # a transform whose record lists channels: drawn for at least one channel
        return bool(r.get(key)) and len(r[key].get("channels", [])) > 0

    share("forced foreground", *[trials(s, "force_fg") for s in sides], 3 / 9)
    share("spatial (rotation or scaling)", *[trials(s, "spatial") for s in sides], 1 - 0.8 * 0.8)
    for label, test in [("rotation | spatial", lambda r: any(a != 0 for a in r["spatial"]["angles"])),
                        ("scaling | spatial", lambda r: r["spatial"]["scales"][0] != 1)]:
        counts = [(sum(1 for r in s if r.get("spatial") and test(r)), sum(1 for r in s if r.get("spatial"))) for s in sides]
        share(label, *counts, 0.2 / 0.36)
    angles = [[a for r in s if r.get("spatial") and any(x != 0 for x in r["spatial"]["angles"]) for a in r["spatial"]["angles"]] for s in sides]
    law("rotation angle (rad)", *angles, uniform_cdf(-rotation, rotation), f"U(±{rotation:.4f})")
    scales = [[r["spatial"]["scales"][0] for r in s if r.get("spatial") and r["spatial"]["scales"][0] != 1] for s in sides]
    law("scale", *scales, uniform_cdf(0.7, 1.4), "U(0.7, 1.4)")
    share("noise", *[trials(s, "noise") for s in sides], 0.1)
    # The noise's standard deviation over ~90 000 voxels estimates its σ ~ U(0, 0.1) to within 0.3 %.
    law("noise σ", *[[r["noise_sd"] for r in s if r.get("noise")] for s in sides], uniform_cdf(0, 0.1), "U(0, 0.1)")
    for key, p, cdf, expected in [("blur", 0.2, None, None), ("brightness", 0.15, bgcontrast_cdf(0.75, 1.25), "BGContrast(0.75, 1.25)"),
                                  ("contrast", 0.15, bgcontrast_cdf(0.75, 1.25), "BGContrast(0.75, 1.25)"),
                                  ("low_resolution", 0.25, None, None), ("gamma_inverted", 0.1, bgcontrast_cdf(0.7, 1.5), "BGContrast(0.7, 1.5)"),
                                  ("gamma", 0.3, bgcontrast_cdf(0.7, 1.5), "BGContrast(0.7, 1.5)")]:
        share(key, *[(sum(1 for r in s if key in r), len(s)) for s in sides], p)
        if key in ("blur", "low_resolution"):
            share(f"{key}: channel | drawn", *[(sum(1 for r in s if applied(r, key)), sum(1 for r in s if key in r)) for s in sides], 0.5)
        if key == "blur":
            law("blur σ", *[[x for r in s if applied(r, key) for sig in r[key]["sigmas"] for x in sig] for s in sides],
                uniform_cdf(0.5, 1.0), "U(0.5, 1)")
        elif key == "low_resolution":
            law("low-resolution zoom", *[[row[0] for r in s if applied(r, key) for row in r[key]["scales"]] for s in sides],
                uniform_cdf(0.5, 1.0), "U(0.5, 1) (float32 on nnU-Net's side)")
        else:
            field = "values" if key in ("brightness", "contrast") else "gamma"
            law(f"{key} factor", *[[v for r in s if key in r for v in r[key][field]] for s in sides], cdf, expected)
    for axis in range(3):
        share(f"mirror axis {axis}", *[(sum(1 for r in s if axis in r.get("mirror", [])), len(s)) for s in sides], 0.5)
    # Transforms per sample, jointly: the number applied, against each other (independent draws on both sides).
    keys = ["spatial", "noise", "brightness", "contrast", "gamma_inverted", "gamma"]
    counts = [collections.Counter(sum(1 for k in keys if r.get(k)) + int(applied(r, "blur")) + int(applied(r, "low_resolution")) for r in s)
              for s in sides]
    support = sorted(set(counts[0]) | set(counts[1]))
    table = np.array([[c.get(k, 0) for k in support] for c in counts])
    table = table[:, table.sum(0) > 0]
    rows.append(("transforms per sample", " ".join(str(v) for v in table[0]), " ".join(str(v) for v in table[1]), f"counts of {support}",
                 float("nan"), float("nan"), stats.chi2_contingency(table)[1]))
    # Cases: uniform with replacement over the training cases, on both sides.
    for name, side in zip(("nnU-Net", "nnseg"), sides):
        c = collections.Counter(r["case"] for r in side)
        rows.append((f"cases drawn ({name})", f"{len(c)} distinct", f"max {max(c.values())} / mean {len(side) / len(c):.2f}", "uniform",
                     float("nan"), float("nan"), stats.chisquare(list(c.values()))[1]))
    # Random crop corners: position within nnU-Net's get_bbox bounds (lbs, ubs), from the case shape.
    positions = [[], []]
    for k, side in enumerate(sides):
        for r in side:
            if r["force_fg"]:
                continue
            for d in range(3):
                need = args.initial[d] - args.patch[d]
                if need + r["shape"][d] < args.initial[d]:
                    need = args.initial[d] - r["shape"][d]
                lb = -need // 2
                ub = r["shape"][d] + need // 2 + need % 2 - args.initial[d]
                if ub > lb:
                    positions[k].append((r["corner"][d] - lb) / (ub - lb))
                elif r["corner"][d] != lb:
                    positions[k].append(float("nan"))
    rows.append(("random corner in [lb, ub] (0…1)", f"{np.nanmean(positions[0]):.4f} ({len(positions[0])})",
                 f"{np.nanmean(positions[1]):.4f} ({len(positions[1])})", "uniform on the integers",
                 float("nan"), float("nan"), stats.ks_2samp(positions[0], positions[1]).pvalue))

    print(f"{len(sides[0])} samples of nnU-Net's loader, {len(sides[1])} of nnseg's")
    print(f"{'quantity':34s} {'nnU-Net':28s} {'nnseg':28s} {'configured':30s} {'p nnU-Net':>9s} {'p nnseg':>9s} {'p two-sample':>12s}")
    for name, a, b, e, pa, pb, p2 in rows:
        def f(p):
            return "" if p != p else f"{p:.3f}"
        print(f"{name:34s} {a:28s} {b:28s} {e:30s} {f(pa):>9s} {f(pb):>9s} {f(p2):>12s}")
    two_sample = [r[6] for r in rows if r[6] == r[6]]
    print(f"two-sample tests: {len(two_sample)}, smallest p {min(two_sample):.3f} "
          f"(Bonferroni: {min(1, min(two_sample) * len(two_sample)):.3f})")


if __name__ == "__main__":
    main()
