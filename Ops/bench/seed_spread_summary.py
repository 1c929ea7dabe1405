#!/usr/bin/env python3
"""Mean ± sd of the validation Dice per class over seeds, for the runs of training_seed_spread.sh and
training_replay_spread.sh (one JSON line per run in WORK/runs.jsonl), and the acceptance of #25: nnseg's mean
≥ nnU-Net's mean − 0.02 for every class, in each precision nnseg ran.

Usage: seed_spread_summary.py <runs.jsonl> <dataset.json> <iterations> [--also <runs.jsonl>]... [--pool-precisions]

--also adds the runs of another file (e.g. Ops/bench/results/hippocampus_one_epoch_draws.jsonl, every draw made for
#25 on any machine). --pool-precisions treats each side's precisions as one group and keeps one run per side and
seed, the last one read (a file lists a superseded run before its re-run): nnseg's fp32 and bf16 end every seed at the
same Dice to 0.003, so all of nnseg's draws can be read against all of nnU-Net's.

Sides: "nnseg" (nnseg's trainer: its initial weights, its loader, its step), "nnU-Net" (nnU-Net's trainer live) and
"nnU-Net data, nnseg step" (nnU-Net's initial weights and batches, recorded by nnunet_replay.py, trained with nnseg's
step — equal to nnU-Net's step to rounding, so these are draws of nnU-Net's pipeline at nnseg's speed) and "nnU-Net
init, nnseg data, nnseg step" (nnU-Net's initial weights on nnseg's batches: nnseg's pipeline with nnU-Net's weights,
to tell the loader from the initial weights). nnseg and the swapped side are compared with nnU-Net's live runs and,
where there are replayed draws, with all draws of nnU-Net's pipeline pooled; only nnseg's own gap sets the verdict.
A one-epoch run either learns a class or largely misses it, so the per-seed spread is wide; the script also prints a
permutation p-value for the difference of the means (all ways of splitting the pooled runs into groups of the same
sizes, or 20 000 seeded random splits), so that a gap is read against the chance a handful of seeds leaves, a 95 %
bootstrap interval of the gap and a Welch t interval (wider, and honest with two or three draws a side), the
acceptance read as a one-sided Welch test (p of "nnseg is not worse by more than 0.02", and of the opposite), the
number of draws per side a ±0.02 interval would take at the spreads seen, and how many epochs on each side leave a
class unlearnt (Dice < 0.5) with Fisher's exact p.
Seeds run on both the replayed and the swapped side are also compared in pairs (the same initial weights, the two
loaders): mean paired difference, bootstrap interval and sign-flip p.
nnseg's seeds run in both precisions are compared in pairs too (bf16 − fp32: the same initial weights and batches).
Exit status 1 when a mean is outside the acceptance. Standard library only (runs where the bench scripts run).
"""
import argparse
import itertools
import json
import math
import random
import statistics
import sys

LIVE, REPLAY, NNSEG = "nnU-Net", "nnU-Net data, nnseg step", "nnseg"
SWAP = "nnU-Net init, nnseg data, nnseg step"


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def permutation_p(a, b, draws=20000, seed=25):
    """Two-sided p of |mean(a) − mean(b)| under random relabelling of the pooled values."""
    pooled, n = a + b, len(a)
    observed = abs(statistics.mean(a) - statistics.mean(b))
    total = sum(pooled)

    def gap(chosen_sum):
        return abs(chosen_sum / n - (total - chosen_sum) / len(b))

    combinations = math.comb(len(pooled), n)
    if combinations <= draws:
        sums = (sum(c) for c in itertools.combinations(pooled, n))
        count = sum(1 for s in sums if gap(s) >= observed - 1e-12)
        return count / combinations
    rng = random.Random(seed)
    count = sum(1 for _ in range(draws) if gap(sum(rng.sample(pooled, n))) >= observed - 1e-12)
    return (count + 1) / (draws + 1)


def bootstrap_interval(a, b, draws=20000, seed=25):
    """95 % percentile interval of mean(a) − mean(b), resampling each group with replacement (seeded)."""
    rng = random.Random(seed)
    gaps = sorted(statistics.mean(rng.choices(a, k=len(a))) - statistics.mean(rng.choices(b, k=len(b)))
                  for _ in range(draws))
    return gaps[int(0.025 * draws)], gaps[int(0.975 * draws) - 1]


# Two-sided 95 % quantiles of Student's t for 1–30 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def welch_terms(a, b):
    """mean(a) − mean(b), its standard error and the Welch–Satterthwaite degrees of freedom (None where the standard
    error is 0), or None with fewer than two draws a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    gap, se = statistics.mean(a) - statistics.mean(b), math.sqrt(va + vb)
    if se == 0:
        return gap, se, None
    return gap, se, (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0))


def welch_interval(a, b):
    """95 % Welch t interval of mean(a) − mean(b) (degrees of freedom rounded down), or None with fewer than two draws
    a side. With a handful of draws the bootstrap interval is too narrow; this one is not."""
    terms = welch_terms(a, b)
    if terms is None:
        return None
    gap, se, df = terms
    if df is None:
        return gap, gap
    df = max(1, math.floor(df))
    t = T95[df - 1] if df <= 30 else 1.96 + (T95[-1] - 1.96) * 30 / df
    return gap - t * se, gap + t * se


def regularized_beta(a, b, x):
    """I_x(a, b), the regularized incomplete beta function, from its continued fraction (modified Lentz), taken on
    the side of x where it converges fast."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - regularized_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * fraction


def student_t_upper(t, df):
    """P(T ≥ t) for Student's t with df (not necessarily whole) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def non_inferiority_p(a, b, margin=0.02):
    """One-sided Welch t test of H0: mean(a) − mean(b) ≤ −margin against H1: it is above (a is not worse than b by
    more than the margin) — #25's acceptance read as a test, with the spread over seeds taken into account. Its
    complement, 1 − p, is the p of the opposite claim (a worse by more than the margin). None with fewer than two draws
    a side or no spread."""
    terms = welch_terms(a, b)
    if terms is None or terms[2] is None:
        return None
    gap, se, df = terms
    return student_t_upper((gap + margin) / se, df)


def draws_needed(a, b, half_width=0.02):
    """Draws per side for a 95 % interval of the gap ±half_width wide, at the spreads seen so far."""
    variance = (statistics.variance(a) if len(a) > 1 else 0) + (statistics.variance(b) if len(b) > 1 else 0)
    return math.ceil((1.96 / half_width) ** 2 * variance)


def fisher_p(failed_a, n_a, failed_b, n_b):
    """Two-sided Fisher exact p for failed_a of n_a against failed_b of n_b."""
    failed, n = failed_a + failed_b, n_a + n_b

    def probability(x):
        return math.comb(failed, x) * math.comb(n - failed, n_a - x) / math.comb(n, n_a)

    observed = probability(failed_a)
    return min(1.0, sum(probability(x) for x in range(max(0, failed - n_b), min(failed, n_a) + 1)
                        if probability(x) <= observed * (1 + 1e-9)))


FAILED = 0.5  # a class that ends below this Dice was not learnt in the epoch


def paired(differences, draws=20000, seed=25):
    """Mean of paired differences, its 95 % bootstrap interval (resampling the pairs, seeded) and the two-sided
    sign-flip permutation p (exact up to 2^16 sign patterns, else seeded random patterns)."""
    rng = random.Random(seed)
    n, observed = len(differences), abs(statistics.mean(differences))
    means = sorted(statistics.mean(rng.choices(differences, k=n)) for _ in range(draws))
    if n <= 16:
        patterns = itertools.product((1, -1), repeat=n)
        total = 2 ** n
    else:
        patterns = ([rng.choice((1, -1)) for _ in range(n)] for _ in range(draws))
        total = draws
    extreme = sum(1 for signs in patterns
                  if abs(sum(s * d for s, d in zip(signs, differences))) / n >= observed - 1e-12)
    return statistics.mean(differences), (means[int(0.025 * draws)], means[int(0.975 * draws) - 1]), extreme / total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("dataset")
    ap.add_argument("iterations", type=int)
    ap.add_argument("--also", action="append", default=[])
    ap.add_argument("--pool-precisions", action="store_true")
    ap.add_argument("--epochs", type=int, default=1, help="runs of this many epochs (a line without 'epochs' is one)")
    args = ap.parse_args()
    pool, dataset_file, iterations = args.pool_precisions, args.dataset, args.iterations
    runs = [json.loads(line) for f in [args.runs] + args.also for line in open(f) if line.strip()]
    runs = [r for r in runs if r["iterations"] == iterations and r.get("epochs", 1) == args.epochs and r.get("dice")]
    if pool:
        latest = {}
        for r in runs:
            latest[(r["side"], r["seed"])] = dict(r, precision="any")
        runs = list(latest.values())
    labels = {str(v): k for k, v in json.load(open(dataset_file))["labels"].items() if v != 0}
    classes = sorted(labels, key=int)
    groups = {}
    for r in runs:
        groups.setdefault((r["side"], r["precision"]), []).append(r)

    epochs = f"{args.epochs} epochs" if args.epochs != 1 else "1 epoch"
    print(f"\nvalidation Dice after {epochs} × {iterations} iterations (mean ± sd over seeds)")
    header = "| side | precision | seeds | " + " | ".join(labels[k] for k in classes) + " | mean foreground |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for (side, precision), rs in sorted(groups.items()):
        cells = []
        for k in classes:
            values = [r["dice"][k] for r in rs]
            m, sd = mean_sd(values)
            cells.append(f"{m:.3f} ± {sd:.3f} ({', '.join(f'{v:.3f}' for v in values)})")
        foreground = statistics.mean(statistics.mean(r["dice"][k] for k in classes) for r in rs)
        print(f"| {side} | {precision} | {', '.join(str(r['seed']) for r in rs)} | " + " | ".join(cells)
              + f" | {foreground:.3f} |")

    references = []
    live = groups.get((LIVE, "any" if pool else "fp32"), [])
    if live:
        references.append(("nnU-Net's trainer (live)", live))
    replayed = [r for (side, _), rs in groups.items() if side == REPLAY for r in rs]
    if replayed:
        references.append(("all draws of nnU-Net's pipeline (live + replayed)", live + replayed))
    verdict = 0
    for (side, precision), rs in sorted(groups.items()):
        if side not in (NNSEG, SWAP):
            continue
        who = "nnseg" if side == NNSEG else "nnU-Net init on nnseg data"
        for name, reference in references:
            for k in classes:
                ours, theirs = [r["dice"][k] for r in rs], [r["dice"][k] for r in reference]
                gap = statistics.mean(ours) - statistics.mean(theirs)
                ok = gap >= -0.02
                if name == references[-1][0] and side == NNSEG:
                    verdict |= 0 if ok else 1
                low, high = bootstrap_interval(ours, theirs)
                welch = welch_interval(ours, theirs)
                welch_text = f", Welch t interval [{welch[0]:+.3f}, {welch[1]:+.3f}]" if welch else ""
                margin_p = non_inferiority_p(ours, theirs)
                if margin_p is not None:
                    welch_text += (f"; not worse by more than 0.02: one-sided Welch p = {margin_p:.2g}"
                                   f" (worse by more than 0.02: p = {1 - margin_p:.2g})")
                print(f"{who} {precision} ({len(ours)} seeds) {labels[k]}: {gap:+.3f} against {name} ({len(theirs)})"
                      f" — {'within' if ok else 'OUTSIDE'} the 0.02 acceptance; permutation p = {permutation_p(ours, theirs):.2f},"
                      f" 95 % bootstrap interval [{low:+.3f}, {high:+.3f}]{welch_text}; draws per side for a ±0.02 interval at these"
                      f" spreads: {draws_needed(ours, theirs)}")
            failed_ours = sum(1 for r in rs if min(r["dice"][k] for k in classes) < FAILED)
            failed_theirs = sum(1 for r in reference if min(r["dice"][k] for k in classes) < FAILED)
            print(f"{who} {precision}: {failed_ours} of {len(rs)} epochs leave a class below Dice {FAILED}, {name}:"
                  f" {failed_theirs} of {len(reference)} (Fisher exact p = {fisher_p(failed_ours, len(rs), failed_theirs, len(reference)):.2f})")
            for k in classes:
                ours_k = sum(1 for r in rs if r["dice"][k] < FAILED)
                theirs_k = sum(1 for r in reference if r["dice"][k] < FAILED)
                print(f"  {labels[k]} below {FAILED}: {ours_k} of {len(rs)} against {theirs_k} of {len(reference)}"
                      f" (Fisher exact p = {fisher_p(ours_k, len(rs), theirs_k, len(reference)):.2f})")
    # The same initial weights on both sides: nnU-Net's weights of seed s on nnU-Net's batches of seed s (REPLAY) and
    # on nnseg's batches of seed s (SWAP), both with nnseg's step (equal to nnU-Net's to rounding). The initial draw
    # decides most of a one-epoch run, so holding it fixed leaves the difference the loaders make, at a fraction of the
    # unpaired spread; with initial weights of the same law (init_function_compare.py) its mean is also the gap
    # between the two trainers' means.
    replay_by_seed = {r["seed"]: r for (side, _), rs in groups.items() if side == REPLAY for r in rs}
    swap_by_seed = {r["seed"]: r for (side, _), rs in groups.items() if side == SWAP for r in rs}
    seeds = sorted(set(replay_by_seed) & set(swap_by_seed))
    if len(seeds) > 1:
        print(f"\npaired, the same initial weights (nnU-Net's), nnseg's batches − nnU-Net's batches, seeds {seeds}:")
        for k in classes:
            differences = [swap_by_seed[s]["dice"][k] - replay_by_seed[s]["dice"][k] for s in seeds]
            mean, (low, high), p = paired(differences)
            sd = statistics.stdev(differences)
            print(f"  {labels[k]}: {mean:+.3f} ± {sd:.3f} (sd of {len(seeds)} pairs), 95 % bootstrap interval [{low:+.3f}, {high:+.3f}],"
                  f" sign-flip p = {p:.2f}; pairs for a ±0.02 interval at this spread: {math.ceil((1.96 * sd / 0.02) ** 2)}")
    # nnseg's own seeds run in both precisions (the same initial weights and batches: the seed fixes both), so the
    # difference is what bf16 arithmetic does to the run — what `--precision auto` must not lose.
    fp32_by_seed = {r["seed"]: r for r in groups.get((NNSEG, "fp32"), [])}
    bf16_by_seed = {r["seed"]: r for r in groups.get((NNSEG, "bf16"), [])}
    seeds = sorted(set(fp32_by_seed) & set(bf16_by_seed))
    if seeds:
        print(f"\npaired, nnseg's same seed in both precisions, bf16 − fp32, seeds {seeds}:")
        for k in classes:
            differences = [bf16_by_seed[s]["dice"][k] - fp32_by_seed[s]["dice"][k] for s in seeds]
            largest = max(differences, key=abs)
            print(f"  {labels[k]}: mean {statistics.mean(differences):+.4f}, largest {largest:+.4f} (seed "
                  f"{seeds[differences.index(largest)]})")
    sys.exit(verdict)


if __name__ == "__main__":
    main()
