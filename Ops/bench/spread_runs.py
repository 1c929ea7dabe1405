#!/usr/bin/env python3
"""The run lines of training_seed_spread.sh and training_replay_spread.sh (WORK/runs.jsonl, read by
seed_spread_summary.py), written and looked up in one place.

  spread_runs.py line <summary.json> <side> <precision> <seed> <iterations> <epochs> [--seconds S]
      prints the run's line: side, precision, seed, iterations, "epochs" when not 1 (the one-epoch lines were written
      before EPOCHS existed and have none), the validation Dice per class from nnseg's summary.json, the command's
      seconds when given, and the CPU it ran on (model name, family/model, AVX-512 BF16 / AMX) — the draws of #25
      come from several machines, and the CPU decides what `--precision auto` is.
  spread_runs.py has <runs.jsonl> <side> <precision> <seed> <iterations> <epochs>
      exit status 0 when the file already holds that run (with a Dice), 1 when not.

nnunet_train.py (nnU-Net's trainer live, in the reference environment) builds its RESULT line with run_line too.

Standard library only (runs where the bench scripts run).
"""
import json
import sys


def cpu():
    """'AMD EPYC (25/17), AVX-512 BF16' from /proc/cpuinfo; 'unknown CPU' where there is none."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return "unknown CPU"
    flags = set(fields.get("flags", "").split())
    features = []
    if "avx512_bf16" in flags:
        features.append("AVX-512 BF16")
    elif "avx512f" in flags:
        features.append("AVX-512")
    elif "avx2" in flags:
        features.append("AVX2")
    if "amx_bf16" in flags:
        features.append("AMX")
    name = fields.get("model name", "unknown CPU")
    family_model = f" ({fields['cpu family']}/{fields['model']})" if "cpu family" in fields and "model" in fields else ""
    return name + family_model + "".join(", " + f for f in features)


def run_line(side, precision, seed, iterations, epochs, dice, **extra):
    """One run as the summary reads it: side, precision, seed, iterations, "epochs" when not 1 (the one-epoch lines
    were written before EPOCHS existed and have none), the Dice per class, then extra keys, then the CPU."""
    run = {"side": side, "precision": precision, "seed": int(seed), "iterations": int(iterations)}
    if int(epochs) != 1:
        run["epochs"] = int(epochs)
    run["dice"] = dice
    run.update(extra)
    run["cpu"] = cpu()
    return run


def matches(run, side, precision, seed, iterations, epochs):
    return (run.get("side") == side and run.get("precision") == precision and run.get("seed") == seed
            and run.get("iterations") == iterations and run.get("epochs", 1) == epochs and bool(run.get("dice")))


def main(argv):
    if len(argv) >= 7 and argv[0] == "line":
        summary_file, side, precision, seed, iterations, epochs = argv[1:7]
        rest = argv[7:]
        extra = {}
        if rest[:1] == ["--seconds"] and len(rest) == 2:
            extra["command_seconds"] = round(float(rest[1]), 1)
        elif rest:
            sys.exit(f"spread_runs.py line: unexpected {' '.join(rest)}")
        with open(summary_file) as f:
            summary = json.load(f)
        dice = {k: v["Dice"] for k, v in summary["mean"].items()}
        print(json.dumps(run_line(side, precision, seed, iterations, epochs, dice, **extra)))
        return 0
    if len(argv) == 7 and argv[0] == "has":
        runs_file, side, precision, seed, iterations, epochs = argv[1:7]
        with open(runs_file) as f:
            runs = [json.loads(line) for line in f if line.strip()]
        found = any(matches(r, side, precision, int(seed), int(iterations), int(epochs)) for r in runs)
        return 0 if found else 1
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
