"""Speed of one full training step (forward, backward, optimizer step) per optimizer and model.

Not part of the test run: ``pytest benchmarks --benchmark-only``. Each benchmark group is one
model; ``conftest.py`` prints every step's time as a ratio to the full-precision Adam step of the
same run (and to the fused Adam step), and ``ratios.py`` does the same for a saved
``--benchmark-json`` file; its docstring lists the targets.

By default the steps run on one thread and are timed in process CPU time
(``time.process_time``), which stays meaningful on a shared machine where other work competes
for the cores; ``BLAQ_BENCH_THREADS=N`` (N > 1) runs on N threads and times wall-clock instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from benchmark.quant import BLAQ, LossAwareAdam, available_schemes
from benchmark.tasks.losses import squared_hinge
from benchmark.tasks.models import mlp, vgg_small

BATCH = 100
THREADS = int(os.environ.get("BLAQ_BENCH_THREADS", "1"))
TIMER = time.process_time if THREADS == 1 else time.perf_counter
pytestmark = pytest.mark.benchmark(timer=TIMER)

# model -> (builder, input shape, rounds); VGG-small at 1/4 width (32-64-128 channels, 256 FC)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "mnist-mlp": (lambda: mlp(width=1.0), (1, 28, 28), 15),
    "cifar10-vgg-w4": (lambda: vgg_small(width=0.25), (3, 32, 32), 6),
}

# optimizer -> (kind, scheme, bits, options); "fp" is torch.optim.Adam on full-precision
# weights ("fp-fused": Adam(fused=True)); "-r1"/"-r2": the iterative schemes with a round cap;
# "-c": compile=True (the first steps, untimed, compile; later processes load inductor's cache)
OPTIMIZERS: dict[str, tuple[str, str | None, int, dict]] = {
    "fp-adam": ("fp", None, 32, {}),
    "fp-adam-fused": ("fp-fused", None, 32, {}),
    "laq-bwn": ("laq", "bwn", 1, {}),
    "laq-twn": ("laq", "twn", 2, {}),
    "laq-lab": ("laq", "lab", 1, {}),
    "laq-lat-exact": ("laq", "lat-exact", 2, {}),
    "laq-lat-approx": ("laq", "lat-approx", 2, {}),
    "laq-laq-linear": ("laq", "laq-linear", 3, {}),
    "laq-laq-log": ("laq", "laq-log", 3, {}),
    "laq-lat-approx-r1": ("laq", "lat-approx", 2, {"rounds": 1}),
    "laq-laq-linear-r1": ("laq", "laq-linear", 3, {"rounds": 1}),
    "laq-laq-log-r1": ("laq", "laq-log", 3, {"rounds": 1}),
    "laq-laq-log-r2": ("laq", "laq-log", 3, {"rounds": 2}),
    "laq-lab-zigzag": ("laq-zigzag", "lab", 1, {}),
    "blaq-lab": ("blaq", "lab", 1, {}),
    "blaq-lat-exact": ("blaq", "lat-exact", 2, {}),
}
# the opt-in fast path: every row above but Adam's again with compile=True, named "...-c"
OPTIMIZERS.update({
    f"{name}-c": (kind, scheme, bits, {**options, "compile": True})
    for name, (kind, scheme, bits, options) in list(OPTIMIZERS.items()) if kind not in ("fp", "fp-fused")
})


def make_step(model_name: str, opt_name: str, seed: int = 0) -> Callable[[], torch.Tensor]:
    """A function doing one training step on a fixed batch; BLAQ steps are in an active epoch."""
    torch.manual_seed(seed)
    build, shape, _ = MODELS[model_name]
    model = build()
    x = torch.randn(BATCH, *shape)
    y = torch.randint(0, 10, (BATCH,))
    kind, scheme, bits, options = OPTIMIZERS[opt_name]
    if kind in ("fp", "fp-fused"):
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3,
                                                      fused=kind == "fp-fused")
    elif kind == "blaq":  # m = 1: every epoch is active
        opt = BLAQ(model, scheme, bits=bits, lr=1e-3, a=0.6, m=1, **options)
    else:
        opt = LossAwareAdam(model, scheme, bits=bits, lr=1e-3, zigzag=kind == "laq-zigzag",
                            **options)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = squared_hinge(model(x), y)
        loss.backward()
        return loss

    def step() -> torch.Tensor:
        return opt.step(closure)

    return step


@pytest.fixture(scope="module", autouse=True)
def warm_process() -> None:
    """A process's first training steps are slow (allocator, kernel caches): take them untimed."""
    torch.set_num_threads(THREADS)
    for model_name in MODELS:
        for opt_name in ("fp-adam", "blaq-lab"):
            step = make_step(model_name, opt_name)
            for _ in range(3):
                step()


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_step(benchmark, record_step, model_name: str, opt_name: str) -> None:
    kind, scheme, bits, options = OPTIMIZERS[opt_name]
    if scheme is not None and scheme not in available_schemes():
        pytest.skip(f"scheme {scheme} is not registered")
    torch.set_num_threads(THREADS)
    step = make_step(model_name, opt_name)
    benchmark.group = model_name
    benchmark.extra_info.update(model=model_name, optimizer=opt_name, kind=kind, scheme=scheme,
                                bits=bits, options=options, threads=torch.get_num_threads(), batch=BATCH,
                                timer=TIMER.__name__)
    loss = benchmark.pedantic(step, rounds=MODELS[model_name][2], warmup_rounds=2, iterations=1)
    assert torch.isfinite(loss)
    record_step(benchmark)
