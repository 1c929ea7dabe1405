#!/usr/bin/env python3
"""Whether nnseg's initial weights and nnU-Net's compute the same law of functions (#25), and whether what the
untrained network computes predicts how its one-epoch run ends.

Usage: init_function_compare.py <nnseg.jsonl> <torch.jsonl> [--draws <results jsonl> <nnseg draws.jsonl> <torch draws.jsonl>]

<nnseg.jsonl>: `TrainingBenchmark initfn <batches> N --seeds …` (nnseg's `.kaiming(seed:)`, many seeds);
<torch.jsonl>: `init_function_stats.py … --seeds …` (torch.manual_seed + nnU-Net's InitWeights_He, many seeds), both on
the same batches. Per statistic and class: mean ± sd on each side and the two-sample Kolmogorov–Smirnov test — equal
laws of initial weights give equal laws of every statistic, so a small p on some statistic (beyond what the number of
tests leaves to chance) is a difference per-tensor moments cannot show.
--draws: the one-epoch runs (Ops/bench/results/hippocampus_one_epoch_draws.jsonl) with the statistics of their initial
weights — nnseg's draws by seed (`initfn --seeds`), nnU-Net's by weights file `…/seed<N>/init.pth` (`nnunet_replay.py
--init-only` for seed N, what `nnunet_seeded.py` starts that seed from) — and the Spearman correlation of each run's
validation Dice per class with each statistic, pooled over both sides.

Runs in the reference Python environment (numpy, scipy); never used by nnseg itself.
"""
import json
import re
import sys

import numpy as np
from scipy import stats

STATISTICS = ["mean_logit", "sd_logit", "argmax_share", "mean_probability", "soft_dice"]


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]  # nnU-Net prints its own lines too


def columns(records):
    """name → values over draws: one column per statistic and class, and the cross-entropy."""
    out = {}
    for name in STATISTICS:
        for k in range(len(records[0][name])):
            out[f"{name}[{k}]"] = np.array([r[name][k] for r in records])
    out["cross_entropy"] = np.array([r["cross_entropy"] for r in records])
    # How one-sided the initial prediction is: the largest argmax share of the three classes.
    out["largest_share"] = np.array([max(r["argmax_share"]) for r in records])
    return out


def compare(nnseg, torch):
    a, b = columns(nnseg), columns(torch)
    print(f"initial function, {len(nnseg)} nnseg draws against {len(torch)} torch draws (mean ± sd; KS two-sample)")
    smallest = 1.0
    for name in a:
        ks = stats.ks_2samp(a[name], b[name])
        smallest = min(smallest, ks.pvalue)
        print(f"  {name:22s} nnseg {a[name].mean():+.4f} ± {a[name].std(ddof=1):.4f}   torch {b[name].mean():+.4f} ± "
              f"{b[name].std(ddof=1):.4f}   KS D {ks.statistic:.3f} p {ks.pvalue:.3f}")
    tests = len(a)
    print(f"smallest p {smallest:.4f} over {tests} statistics (Bonferroni 5 % threshold {0.05 / tests:.4f}): "
          + ("the laws differ" if smallest < 0.05 / tests else "no difference in law found"))


def outcome_correlations(results, nnseg_draws, torch_draws):
    by_seed = {r["seed"]: r for r in nnseg_draws}
    by_file = {}
    for r in torch_draws:
        m = re.search(r"seed(\d+)/init\.pth$", r["source"])
        if m:
            by_file[int(m.group(1))] = r
    # One run per side and seed, the last one read (the results file lists a superseded run before its re-run).
    runs = {}
    for r in results:
        if r.get("iterations") != 250:
            continue
        side = r["side"]
        if side == "nnseg":
            init = by_seed.get(r["seed"])
        elif side in ("nnU-Net", "nnU-Net data, nnseg step", "nnU-Net init, nnseg data, nnseg step"):
            init = by_file.get(r["seed"])
        else:
            continue
        if init is not None:
            runs[(side, r["seed"])] = (r, init)
    pairs = list(runs.values())
    print(f"\n{len(pairs)} one-epoch runs with the statistics of their initial weights "
          f"({sum(1 for (s, _) in runs if s == 'nnseg')} nnseg, {sum(1 for (s, _) in runs if s != 'nnseg')} from nnU-Net's weights)")
    stat = columns([init for _, init in pairs])
    classes = sorted(pairs[0][0]["dice"], key=int)
    for label in classes:
        dice = np.array([r["dice"][label] for r, _ in pairs])
        ranked = sorted(((stats.spearmanr(values, dice), name) for name, values in stat.items()),
                        key=lambda x: x[0].pvalue)
        print(f"class {label}: validation Dice against the initial statistics (Spearman ρ, p), strongest first")
        for result, name in ranked[:6]:
            print(f"  {name:22s} ρ {result.statistic:+.3f}  p {result.pvalue:.4f}")
    print(f"({len(stat)} statistics per class: read p against {0.05 / len(stat):.4f})")

    # nnseg's draws against nnU-Net's pipeline (live and replayed), the gap in validation Dice as it is and adjusted
    # for the initial draw: least squares of Dice on the side and the statistic most correlated with it. Where the
    # two initialisations have one law, the adjustment removes the part of the gap that comes from which initial
    # functions the seeds happened to draw, and narrows the gap's standard error by the share of the spread the
    # statistic explains. The statistic is picked on these same draws, so the adjusted gap describes, it does not test.
    kept_runs = [(side, pair) for (side, _), pair in runs.items() if side != "nnU-Net init, nnseg data, nnseg step"]
    kept = [pair for _, pair in kept_runs]
    is_nnseg = np.array([1.0 if side == "nnseg" else 0.0 for side, _ in kept_runs])
    kept_stat = columns([init for _, init in kept])
    print(f"\nnnseg ({int(is_nnseg.sum())} draws) − nnU-Net's pipeline ({int(len(is_nnseg) - is_nnseg.sum())}), unadjusted and "
          "adjusted for the initial statistic most correlated with the class's Dice:")
    for label in classes:
        dice = np.array([r["dice"][label] for r, _ in kept])
        name = max(kept_stat, key=lambda n: abs(stats.spearmanr(kept_stat[n], dice).statistic))
        covariate = kept_stat[name] - kept_stat[name].mean()
        for title, design in (("unadjusted", np.column_stack([np.ones_like(is_nnseg), is_nnseg])),
                              (f"adjusted for {name}", np.column_stack([np.ones_like(is_nnseg), is_nnseg, covariate]))):
            beta = np.linalg.lstsq(design, dice, rcond=None)[0]
            residual = dice - design @ beta
            variance = residual @ residual / (len(dice) - design.shape[1]) * np.linalg.inv(design.T @ design)
            se = float(np.sqrt(variance[1, 1]))
            t = stats.t.sf(abs(beta[1]) / se, len(dice) - design.shape[1]) * 2
            print(f"  class {label} {title}: gap {beta[1]:+.3f} ± {se:.3f} (t-test p {t:.2f})"
                  + (f", slope {beta[2]:+.3f} per unit" if design.shape[1] > 2 else "")
                  + f"; mean {name} nnseg {kept_stat[name][is_nnseg == 1].mean():.3f}, nnU-Net {kept_stat[name][is_nnseg == 0].mean():.3f}")


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__)
        sys.exit(64)
    compare(read(args[0]), read(args[1]))
    if "--draws" in args:
        i = args.index("--draws")
        outcome_correlations(read(args[i + 1]), read(args[i + 2]), read(args[i + 3]))


if __name__ == "__main__":
    main()
