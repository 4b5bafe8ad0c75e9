"""GPU benchmark: the quantizer's and BLAQ's share of a training step at the paper's batch sizes.

    python benchmarks/gpu_share.py [--steps N] [--models vgg-small resnet18] [--json OUT]

``--compiled`` adds every LAQ and BLAQ row with ``compile=True`` ("NAME-c": the quantizer is
fused into the update there, so only the step's ratios are reported).

Models: VGG-small (CIFAR-10, 32x32, batch 100) and torchvision's ResNet-18 (ImageNet, 224x224,
1000 classes, batch 256), float32, random data on the device (speed only). Per optimizer, one
step is the closure (forward, backward) plus ``opt.step``; timed with CUDA events over ``N``
steps after warm-up steps, the quantizer's own GPU time with events recorded around every
``solve_into`` call (recording an event never waits for the device). Reported: median step
time, its ratio to the Adam step (default and fused), the quantizer's share of the step (goal:
at most 10%), and BLAQ's ratio to the LAQ step with the same quantizer (goal: at most 2.05).
Exits with status 2 and a one-line reason without a GPU; ``test_gpu_share.py`` runs it under
pytest (skipped without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.quant import BLAQ, LossAwareAdam, get_scheme  # noqa: E402
from benchmark.tasks.losses import squared_hinge  # noqa: E402
from benchmark.tasks.models import resnet18, vgg_small  # noqa: E402

# model -> (builder, input shape, classes, the paper's batch size)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int, int]] = {
    "vgg-small": (lambda: vgg_small(width=1.0), (3, 32, 32), 10, 100),
    "resnet18": (lambda: resnet18(num_classes=1000), (3, 224, 224), 1000, 256),
}
SCHEMES = [("bwn", 1), ("twn", 2), ("lab", 1), ("lat-exact", 2), ("lat-approx", 2),
           ("laq-linear", 3), ("laq-log", 3)]
QUANT_SHARE_GOAL = 0.10
BLAQ_GOAL = 2.05


ITERATIVE = ("lat-approx", "laq-linear", "laq-log")


def optimizers(compiled: bool = False) -> dict[str, tuple[str, str | None, int, dict[str, Any]]]:
    """name -> (kind, scheme, bits, options); "-r1": the iterative schemes capped at one round;
    with ``compiled``, also every LAQ and BLAQ row with ``compile=True``, named "NAME-c"."""
    out: dict[str, tuple[str, str | None, int, dict[str, Any]]] = {
        "fp-adam": ("fp", None, 32, {}), "fp-adam-fused": ("fp-fused", None, 32, {})}
    for scheme, bits in SCHEMES:
        out[f"laq-{scheme}"] = ("laq", scheme, bits, {})
    for scheme, bits in SCHEMES:
        if scheme in ITERATIVE:
            out[f"laq-{scheme}-r1"] = ("laq", scheme, bits, {"rounds": 1})
    for scheme, bits in SCHEMES:
        out[f"blaq-{scheme}"] = ("blaq", scheme, bits, {})
    if compiled:
        out.update({f"{name}-c": (kind, scheme, bits, {**options, "compile": True})
                    for name, (kind, scheme, bits, options) in list(out.items())
                    if kind in ("laq", "blaq")})
    return out


class _QuantizerTimer:
    """Wraps a scheme's ``solve_into`` to record CUDA events around each call."""

    def __init__(self) -> None:
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.on = False

    def wrap(self, opt: LossAwareAdam) -> None:
        scheme = opt._scheme
        inner = scheme.solve_into

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return inner(*args, **kwargs)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = inner(*args, **kwargs)
            end.record()
            self.events.append((start, end))
            return out

        # a per-optimizer copy of the scheme, so that the registry's stays untouched
        opt._scheme = type(scheme)(**{**scheme.__dict__, "solve_into": timed})

    def total_ms(self) -> float:
        return sum(s.elapsed_time(e) for s, e in self.events)


def measure(model_name: str, opt_name: str, steps: int, warmup: int = 5) -> dict[str, Any]:
    """Median step time (ms) and the quantizer's time per step (ms) of one optimizer."""
    build, shape, classes, batch = MODELS[model_name]
    kind, scheme, bits, options = optimizers(compiled=True)[opt_name]
    timed = not options.get("compile")  # a compiled step fuses the quantizer into the update
    torch.manual_seed(0)
    model = build().cuda()
    x = torch.randn(batch, *shape, device="cuda")
    y = torch.randint(0, classes, (batch,), device="cuda")
    timer = _QuantizerTimer()
    if kind in ("fp", "fp-fused"):
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3,
                                                      fused=kind == "fp-fused")
    elif kind == "blaq":
        get_scheme(scheme).check_bits(bits)
        opt = BLAQ(model, scheme, bits=bits, lr=1e-3, a=0.6, m=1, **options)  # every epoch active
    else:
        opt = LossAwareAdam(model, scheme, bits=bits, lr=1e-3, **options)
    if kind in ("laq", "blaq") and timed:
        timer.wrap(opt)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = squared_hinge(model(x), y) if classes == 10 else nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(warmup):
        opt.step(closure)
    torch.cuda.synchronize()
    times = []
    timer.on = True
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        opt.step(closure)
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    step_ms = statistics.median(s.elapsed_time(e) for s, e in times)
    quant_ms = timer.total_ms() / steps if timed else None
    return {"model": model_name, "optimizer": opt_name, "kind": kind, "scheme": scheme,
            "bits": bits, "options": options, "batch": batch, "step_ms": step_ms, "quantizer_ms": quant_ms}


def table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row: time, ratios to Adam and fused Adam, quantizer share, BLAQ vs LAQ."""
    lines = []
    by = {(r["model"], r["optimizer"]): r for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        fp, fused = by.get((model, "fp-adam")), by.get((model, "fp-adam-fused"))
        batch = next(r["batch"] for r in rows if r["model"] == model)
        lines.append(f"{model} (batch {batch}): median step ms; ratio to Adam / fused Adam; "
                     f"quantizer share of the step (goal <= {QUANT_SHARE_GOAL:.0%}); BLAQ/LAQ")
        for r in (r for r in rows if r["model"] == model):
            text = f"  {r['optimizer']:18s} {r['step_ms']:8.2f} ms"
            if fp is not None:
                text += f"  x{r['step_ms'] / fp['step_ms']:.3f} vs fp"
            if fused is not None:
                text += f"  x{r['step_ms'] / fused['step_ms']:.3f} vs fused"
            if r["kind"] in ("laq", "blaq") and r["quantizer_ms"] is None:
                text += "  quantizer fused into the update (compile=True)"
            elif r["kind"] in ("laq", "blaq"):
                share = r["quantizer_ms"] / r["step_ms"]
                ok = "ok" if share <= QUANT_SHARE_GOAL else "MISSED"
                text += f"  quantizer {r['quantizer_ms']:.2f} ms = {share:.1%} [{ok}]"
            if r["kind"] == "blaq":
                base = by.get((model, r["optimizer"].replace("blaq-", "laq-", 1)))
                if base is not None:
                    ratio = r["step_ms"] / base["step_ms"]
                    text += f"  x{ratio:.3f} vs laq [<= {BLAQ_GOAL}: {'ok' if ratio <= BLAQ_GOAL else 'MISSED'}]"
            lines.append(text)
    return lines


def run(models: list[str], steps: int, names: list[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        for name in names or optimizers():
            rows.append(measure(model, name, steps))
            torch.cuda.empty_cache()  # the last model and optimizer are gone: free their memory
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--optimizers", nargs="+", default=None,
                        choices=list(optimizers(compiled=True)))
    parser.add_argument("--compiled", action="store_true",
                        help="also every LAQ and BLAQ row with compile=True (compiles first: minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_share: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    if args.steps < 1:
        print(f"gpu_share: --steps must be positive, not {args.steps}", file=sys.stderr)
        return 2
    rows = run(args.models, args.steps, args.optimizers or list(optimizers(args.compiled)))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("\n".join(table(rows)))
    if args.json is not None:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                         "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
