"""The round cap of the iterative schemes: its effect on quick-profile accuracy and training time.

    python benchmarks/rounds_accuracy.py [RUNS_DIR] [--seeds 0 1 2] [--rounds 1 2]

Trains the quick-profile runs of the iterative schemes with the spec's stopping rule (the
default) and with the alternation capped at ``rounds`` per step (the run option ``rounds``: the
previous step's levels stay the warm start, so the convergence carries across steps). A capped
run has a run id of its own, so both kinds live in one run store, RUNS_DIR (default
``results/runs-quick``, whose committed runs are the spec-rule side: cache hits). One thread per
run, as the committed runs. Prints, per scheme and cap, the paired differences over seeds
(capped minus the spec's rule, same seed) of the final test accuracy and of the training time,
with their 95% Student-t intervals (``benchmark.stats``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import run as R  # noqa: E402
from benchmark.config import RunConfig  # noqa: E402
from benchmark.stats import t_interval  # noqa: E402

# (task, method, scheme, bits): the iterative schemes of the committed quick grids
CASES = [(task, "laq", scheme, bits)
         for task in ("mnist-mlp", "mnist-lenet5", "cifar10-vgg", "svhn-net")
         for scheme, bits in (("lat-approx", 2), ("laq-linear", 3), ("laq-log", 3))]


def _train(config: RunConfig, runs_dir: Path) -> dict[str, Any] | None:
    outcome = R.run_config(config, runs_dir, threads=1)
    if outcome.status in ("failed", "busy"):
        print(f"rounds_accuracy: {outcome.run_id} {outcome.status}: {outcome.reason}",
              file=sys.stderr)
        return None
    run = json.loads((outcome.run_dir / "run.json").read_text())
    result = run.get("result") or {}
    if result.get("test_acc") is None:
        print(f"rounds_accuracy: {outcome.run_id} has no test accuracy (status "
              f"{run.get('status')})", file=sys.stderr)
        return None
    info = json.loads((outcome.run_dir / "info.json").read_text())
    return {"run_id": outcome.run_id, "test_acc": result.get("test_acc"),
            "train_time_s": result.get("train_time_s"),
            "stand_in": bool(info.get("data", {}).get("stand_in"))}


def _interval(diffs: list[float]) -> str:
    mean = statistics.mean(diffs)
    ci = t_interval(diffs)
    return f"{mean:+.2f}" + ("" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", nargs="?", type=Path, default=Path("results/runs-quick"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if any(r < 1 for r in args.rounds) or any(s < 0 for s in args.seeds):
        print("rounds_accuracy: --rounds must be positive and --seeds non-negative integers",
              file=sys.stderr)
        return 2
    runs: dict[tuple, dict[str, Any]] = {}
    for task, method, scheme, bits in CASES:
        for rounds in [None, *args.rounds]:
            for seed in args.seeds:
                config = RunConfig(task=task, method=method, scheme=scheme, bits=bits,
                                   profile="quick", seed=seed, rounds=rounds)
                row = _train(config, args.runs_dir)
                if row is None:
                    return 1
                runs[(task, scheme, bits, rounds, seed)] = row
                print(f"{task} {scheme} {bits} bits, rounds={rounds or 'spec'}, seed {seed}: "
                      f"test acc {row['test_acc']:.2f} %, {row['train_time_s']:.1f} s "
                      f"({row['run_id']})", flush=True)
    pooled: dict[int, list[float]] = {rounds: [] for rounds in args.rounds}
    print("\ncapped minus the spec's rule, paired over seeds "
          f"{' '.join(map(str, args.seeds))}: mean [95% interval]")
    for task, _, scheme, bits in CASES:
        spec = [runs[(task, scheme, bits, None, s)] for s in args.seeds]
        accs = " ".join(f"{r['test_acc']:.2f}" for r in spec)
        stand_in = " (stand-in data)" if any(r["stand_in"] for r in spec) else ""
        print(f"  {task} {scheme} {bits} bits{stand_in}: the spec's rule {accs} %")
        for rounds in args.rounds:
            capped = [runs[(task, scheme, bits, rounds, s)] for s in args.seeds]
            acc = [c["test_acc"] - r["test_acc"] for c, r in zip(capped, spec, strict=True)]
            pooled[rounds] += acc
            accs = " ".join(f"{c['test_acc']:.2f}" for c in capped)
            print(f"    rounds={rounds}: {accs} %; difference {_interval(acc)} points")
    print("  every case pooled (a check for an effect common to all; the cases differ in task, "
          "scheme and data):")
    for rounds, acc in pooled.items():
        print(f"    rounds={rounds}: {len(acc)} pairs, difference {_interval(acc)} points")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
