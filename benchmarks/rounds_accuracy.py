"""The round cap of the iterative schemes: its effect on quick-profile accuracy and training time.

    python benchmarks/rounds_accuracy.py [RUNS_DIR] [--seeds 0 1] [--rounds 1 2]

Trains quick-profile runs of the iterative schemes with the spec's stopping rule (the default)
and with ``rounds`` capped (the warm start carries the convergence to the next step). The
default runs go to the run store RUNS_DIR (default ``runs-rounds``; a copy of
``results/runs-quick`` there makes them cache hits), the capped ones to ``RUNS_DIR/rounds-K``:
the cap is not part of the run config (so not of the run id), and a capped run must never sit
in a store beside default runs. One thread, as the committed runs. Prints final test accuracy
and training time per run and the mean per setting.
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

# (task, method, scheme, bits)
CASES = [("mnist-mlp", "laq", "laq-log", 3), ("mnist-mlp", "laq", "laq-linear", 3),
         ("mnist-mlp", "laq", "lat-approx", 2), ("cifar10-vgg", "laq", "laq-log", 3)]

_make_optimizer = R.make_optimizer


ROUNDS: list[int | None] = [None]  # the cap of the runs being trained (None: the spec's rule)


def _with_rounds(config: RunConfig, model: Any, lr: float) -> Any:
    """The suite's optimizer, with the round cap of ``ROUNDS`` (read at every step)."""
    opt = _make_optimizer(config, model, lr)
    if ROUNDS[0] is not None:
        opt.rounds = ROUNDS[0]
    return opt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs-rounds"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if any(r < 1 for r in args.rounds):
        print("rounds_accuracy: --rounds must be positive integers", file=sys.stderr)
        return 2
    R.make_optimizer = _with_rounds
    rows = []
    for task, method, scheme, bits in CASES:
        for rounds in [None, *args.rounds]:
            for seed in args.seeds:
                config = RunConfig(task=task, method=method, scheme=scheme, bits=bits,
                                   profile="quick", seed=seed)
                ROUNDS[0] = rounds
                store = args.runs_dir if rounds is None else args.runs_dir / f"rounds-{rounds}"
                outcome = R.run_config(config, store, threads=1)
                if outcome.status in ("failed", "busy"):
                    print(f"rounds_accuracy: {outcome.run_id} {outcome.status}: {outcome.reason}",
                          file=sys.stderr)
                    return 1
                run = json.loads((outcome.run_dir / "run.json").read_text())
                result = run.get("result") or {}
                rows.append({"task": task, "scheme": scheme, "bits": bits, "rounds": rounds,
                             "seed": seed, "status": run.get("status"),
                             "test_acc": result.get("test_acc"),
                             "train_time_s": result.get("train_time_s"),
                             "run_id": outcome.run_id})
                print(f"{task} {scheme} {bits} rounds={rounds or 'spec'} seed={seed}: "
                      f"{run.get('status')} acc {result.get('test_acc')} "
                      f"time {result.get('train_time_s', float('nan')):.1f} s ({outcome.run_id})",
                      flush=True)
    print("\nmeans over seeds (test accuracy %, training time s):")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["scheme"], r["bits"], r["rounds"]), []).append(r)
    for (task, scheme, bits, rounds), rs in groups.items():
        done = [r for r in rs if r["test_acc"] is not None]
        if not done:
            continue
        acc = statistics.mean(r["test_acc"] for r in done)
        secs = statistics.mean(r["train_time_s"] for r in done)
        accs = " ".join(f"{r['test_acc']:.2f}" for r in done)
        print(f"  {task:12s} {scheme:10s} {bits}  rounds={rounds or 'spec':4}  acc {acc:6.2f} "
              f"({accs})  time {secs:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
