"""The fast paths: workspaces, the sync-free (GPU) path and the round cap give the reference results.

- the alternation against a plain reference (the spec's rule written out with fresh tensors and
  Python floats, a level-change test included), bit for bit, over chains of warm starts;
- the sync-free path (what a GPU runs) against the host-reading path (what the CPU runs);
- no host read of a device value inside a step, checked on the CPU by a dispatch mode that
  fails on every operation that hands a tensor's value to Python (``.item()``, ``bool()``,
  ``float()``, ``nonzero``, ...) and by patching ``tolist``/``numpy``; and with
  ``torch.cuda.set_sync_debug_mode("error")`` on a GPU;
- no weight-sized allocation in any step after the first (counted through the dispatcher, and
  with the CUDA allocator's statistics on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from benchmark.errors import UserError
from benchmark.quant import BLAQ, LossAwareAdam, get_scheme
from benchmark.quant import quantizers as Q

ITERATIVE = [("lat-approx", 2), ("laq-linear", 3), ("laq-linear", 4), ("laq-log", 3), ("laq-log", 4)]
EVERY = [("bwn", 1), ("twn", 2), ("lab", 1), ("lat-exact", 2), *ITERATIVE]
STEPPED = [s for s in EVERY if s[1] < 4]  # the optimizer-level tests: one bit width per scheme
aten = torch.ops.aten


# --- a reference of the alternation, written out plainly ---------------------------------------


def _ref_alternate(w, d, bits, init, log, rounds=10):
    """docs/spec.md's alternation: at most ``rounds`` rounds or alpha change below 1e-6, a round
    kept only if it lowers the objective, stopping when the levels do not change."""
    n = 2 ** (bits - 1) - 1
    unit = 1 if log else n
    wf = w.reshape(-1)
    df = None if d is None else d.reshape(-1)

    def project(scale):
        if log:
            return Q._round_log(wf, scale, n, torch.empty_like(wf))
        return torch.mul(wf, 1.0 / scale).clamp_(-n, n).round_()

    def fit(u):
        if df is None:
            return float(torch.dot(wf, u)), float(torch.dot(u, u))
        du = df * u
        return float(torch.dot(du, wf)), float(torch.dot(du, u))

    def better(f, g):
        if not (f[0] > 0 and f[1] > 0):
            return False
        if not (g[0] > 0 and g[1] > 0):
            return True
        return (f[0] / g[0]) * (f[0] / g[0]) > f[1] / g[1]

    start = None
    if init is not None:
        flat = init.reshape(-1)
        start = Q._round_log(flat, 1.0, n, torch.empty_like(flat)) if log else (
            flat.mul(n).clamp_(-n, n).round_())
    f = (0.0, 0.0) if start is None else fit(start)
    if not better(f, (0.0, 0.0)):
        mean = float(wf.abs().mean())
        if mean == 0.0:
            return torch.zeros(()), torch.zeros_like(w)
        start = project(4 * n / (2 * n + 1) * mean / unit)
        f = fit(start)
        if not better(f, (0.0, 0.0)):
            return torch.zeros(()), torch.zeros_like(w)
    u, scale = start, f[0] / f[1]
    for _ in range(rounds):
        v = project(scale)
        g = fit(v)
        if torch.equal(u, v) or not better(g, f):
            break
        u, f = v, g
        previous, scale = scale, f[0] / f[1]
        if abs(scale - previous) <= 1e-6 * previous:
            break
    return torch.tensor(scale * unit, dtype=w.dtype), (u / unit).view(w.shape)


def _drift(seed: int, shape=(64, 50), steps: int = 6, scale: float = 0.05):
    """A weight that drifts a little from call to call (as in training), with a curvature."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen) * scale
    for _ in range(steps):
        w = (w + torch.randn(shape, generator=gen) * scale / 5).clamp(-1, 1)
        yield w, torch.rand(shape, generator=gen) + 0.01


@pytest.mark.parametrize(("scheme", "bits"), ITERATIVE)
@pytest.mark.parametrize("curvature", [True, False])
@pytest.mark.parametrize("sync_free", [False, True])
def test_alternation_equals_the_plain_reference_bit_for_bit(scheme, bits, curvature, sync_free):
    """Workspace reuse, warm starts chained through the level slots, both paths: the spec's
    result exactly (alpha and b), as the unoptimised code computed it."""
    sch = get_scheme(scheme)
    for seed in range(3):
        ws, ref_b, b = Q.Workspace(), None, None
        for w, d in _drift(seed):
            d = d if curvature else None
            ref_alpha, ref_b = _ref_alternate(w, d, bits, ref_b, log=scheme == "laq-log")
            alpha, b = sch.solve_into(w, d, bits, b, ws, sync_free=sync_free)
            assert torch.equal(alpha, ref_alpha), (seed, float(alpha), float(ref_alpha))
            assert torch.equal(b, ref_b)


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_sync_free_path_gives_the_host_path_result(scheme, bits):
    """What a GPU runs equals what the CPU runs; LAT exact sorts everything instead of pruning:
    the same support, alpha up to the order of its float64 sums."""
    sch = get_scheme(scheme)
    for seed in range(3):
        ws_host, ws_dev, b_host, b_dev = Q.Workspace(), Q.Workspace(), None, None
        for w, d in _drift(seed, shape=(200, 220)):  # above the size LAT exact prunes
            a_host, b_host = sch.solve_into(w, d, bits, b_host, ws_host, sync_free=False)
            a_dev, b_dev = sch.solve_into(w, d, bits, b_dev, ws_dev, sync_free=True)
            assert torch.equal(b_host, b_dev)
            if scheme == "lat-exact":
                torch.testing.assert_close(a_dev, a_host, rtol=1e-6, atol=0)
            else:
                assert torch.equal(a_host, a_dev)


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
@pytest.mark.parametrize("sync_free", [False, True])
def test_degenerate_inputs_on_both_paths(scheme, bits, sync_free):
    """All-zero weights give alpha 0 and zero levels (binary: +1), nothing NaN; a useless warm
    start (all zero levels) falls back to the cold start."""
    sch = get_scheme(scheme)
    ws = Q.Workspace()
    w = torch.zeros(40, 30)
    alpha, b = sch.solve_into(w, None, bits, None, ws, sync_free=sync_free)
    assert float(alpha) == 0.0 and torch.isfinite(b).all()
    assert torch.equal(b, torch.ones_like(w) if bits == 1 else torch.zeros_like(w))
    w = torch.randn(40, 30) * 0.05
    cold = sch.solve_into(w, None, bits, None, Q.Workspace(), sync_free=sync_free)
    warm = sch.solve_into(w, None, bits, torch.zeros_like(w), ws, sync_free=sync_free)
    assert torch.equal(cold[0], warm[0]) and torch.equal(cold[1], warm[1])


def test_a_call_never_writes_the_slot_of_its_init():
    """The previous result survives the next call that starts from it (the zig-zag meter and
    BLAQ's trial step read it afterwards), however many calls share the workspace."""
    sch = get_scheme("laq-linear")
    ws = Q.Workspace()
    alpha, b = sch.solve_into(torch.randn(30, 20) * 0.05, None, 3, None, ws)
    for w, d in _drift(4, shape=(30, 20), steps=8):
        kept = (alpha.clone(), b.clone())
        for _ in range(2):  # BLAQ: a trial and then the real step, both from the same init
            new = sch.solve_into(w, d, 3, b, ws)
            assert new[1] is not b
            assert torch.equal(alpha, kept[0]) and torch.equal(b, kept[1])
        alpha, b = new


# --- the round cap ----------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "bits"), ITERATIVE)
def test_round_cap(scheme, bits):
    """rounds=10 is the default; a cap stops on the same path of descent: between the warm start
    and the uncapped result in objective, and a chain of one-round calls is one multi-round call."""
    sch = get_scheme(scheme)
    chained = 0
    for w, d in _drift(5, shape=(100, 80), steps=4):
        start = sch.solve_into(w * 0.7 + 0.01, d, bits, None, Q.Workspace())[1].clone()
        full = sch.solve_into(w, d, bits, start, Q.Workspace())
        ten = sch.solve_into(w, d, bits, start, Q.Workspace(), rounds=10)
        assert torch.equal(full[0], ten[0]) and torch.equal(full[1], ten[1])
        one = sch.solve_into(w, d, bits, start, Q.Workspace(), rounds=1)[1].clone()
        assert (_best_objective(w, d, full[1]) <= _best_objective(w, d, one)
                <= _best_objective(w, d, start))
        two = sch.solve_into(w, d, bits, start, Q.Workspace(), rounds=2)
        three = sch.solve_into(w, d, bits, start, Q.Workspace(), rounds=3)
        if not torch.equal(two[1], three[1]):  # still moving after 2 rounds: no stop in between
            again = sch.solve_into(w, d, bits, one, Q.Workspace(), rounds=1)
            assert torch.equal(again[1], two[1]) and torch.equal(again[0], two[0])
            chained += 1
    assert chained > 0 or scheme == "lat-approx"  # the chain property was exercised


def _best_objective(w, d, b) -> float:
    w, d, b = w.double(), d.double(), b.double()
    num, den = float((d * w * b).sum()), float((d * b * b).sum())
    return float((d * w * w).sum()) - (num * num / den if num > 0 and den > 0 else 0.0)


def test_optimizer_options_are_validated():
    model = nn.Linear(4, 3)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(UserError, match="rounds"):
            LossAwareAdam(model, "laq-linear", bits=3, rounds=bad)
    with pytest.raises(UserError, match="sync_free"):
        LossAwareAdam(model, "lab", sync_free="yes")
    assert BLAQ(model, "laq-log", bits=3, rounds=2, sync_free=True).rounds == 2


# --- the optimizer steps: no host read, no allocation -----------------------------------------


class Net(nn.Module):
    """Conv (channels-last capable) + BN + Linear + BN + Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 6 * 6, 1000, bias=False)  # above LAT exact's pruning size
        self.bn2 = nn.BatchNorm1d(1000)
        self.fc2 = nn.Linear(1000, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv(x)))
        return self.fc2(torch.relu(self.bn2(self.fc1(x.flatten(1)))))


OPTIMIZERS = [pytest.param(LossAwareAdam, {}, id="laq"),
              pytest.param(BLAQ, {"m": 1, "blend": "moment"}, id="blaq-moment"),
              pytest.param(BLAQ, {"m": 1, "blend": "gradient", "keep_moments": "current"},
                           id="blaq-gradient")]


def _setup(cls, kwargs, scheme, bits, device="cpu", **options):
    torch.manual_seed(0)
    model = Net().to(device)
    opt = cls(model, scheme, bits=bits, lr=0.02, zigzag=True, **kwargs, **options)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, 8, 8, generator=gen).to(device)
    y = torch.randint(0, 10, (16,), generator=gen).to(device)
    return model, opt, x, y


class _Guard(TorchDispatchMode):
    """Fails on every aten operation that hands a tensor's value to the host, or whose output
    shape depends on tensor values (and so needs one): on a GPU each is a synchronisation.
    ``paused`` lets the model's own forward/backward (the closure) run unchecked."""

    FORBIDDEN = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default,
                 aten.nonzero.default, aten.masked_select.default, aten.allclose.default,
                 aten._unique2.default, aten.unique_consecutive.default, aten.unique_dim.default,
                 aten.repeat_interleave.Tensor, aten.item.default}

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.calls: list[str] = []

    MASKED = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
              aten._index_put_impl_.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused and (func in self.FORBIDDEN or (func in self.MASKED and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ))):  # a boolean mask as an index: its count of True decides the shape
            raise AssertionError(f"host read of a device value in the step: {func}")
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


@contextmanager
def no_host_reads():
    """The guard, plus ``tolist``/``numpy``/``cpu`` (which read without a dispatched op)."""
    guard = _Guard()
    patched = {}

    def forbid(name):
        original = getattr(torch.Tensor, name)

        def fail(self, *args, **kwargs):
            if not guard.paused:
                raise AssertionError(f"host read of a device value in the step: Tensor.{name}")
            return original(self, *args, **kwargs)

        patched[name] = original
        setattr(torch.Tensor, name, fail)

    for name in ("tolist", "numpy", "cpu"):
        forbid(name)
    try:
        with guard:
            yield guard
    finally:
        for name, original in patched.items():
            setattr(torch.Tensor, name, original)


def _closure(model, opt, x, y, guard=None) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        if guard is not None:
            guard.paused = True
        try:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
        finally:
            if guard is not None:
                guard.paused = False
        return loss

    return closure


@pytest.mark.parametrize("probe", [
    lambda t: t.sum().item(), lambda t: bool(t.sum() > 0), lambda t: float(t.sum()), lambda t: int(t[0]),
    lambda t: t.tolist(), lambda t: torch.nonzero(t), lambda t: t[t > 0], lambda t: t.numpy(),
    lambda t: torch.equal(t, t), lambda t: t[torch.argmax(t)], lambda t: range(3)[torch.argmax(t)],
    lambda t: t.cpu(),
])
def test_the_host_read_guard_catches_every_kind_of_read(probe):
    """The guard really fails: each of these is a synchronisation on a GPU."""
    t = torch.randn(5)
    with pytest.raises(AssertionError, match="host read"), no_host_reads():
        probe(t)


@pytest.mark.parametrize(("scheme", "bits"), STEPPED)
@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS)
def test_sync_free_step_reads_nothing_on_the_host(cls, kwargs, scheme, bits):
    """Every scheme, LAQ and BLAQ, with the zig-zag meter: the path a GPU takes (sync_free, the
    default off the CPU) makes no host read inside step(), the first step included."""
    model, opt, x, y = _setup(cls, kwargs, scheme, bits, sync_free=True)
    with no_host_reads() as guard:
        for _ in range(2):
            opt.step(_closure(model, opt, x, y, guard))
    assert any("mul" in c for c in guard.calls)  # the guard saw the step's operations
    assert opt.zigzag.iteration == 2


def _same_training(cls, kwargs, scheme, bits, steps=3):
    """(w, b, alpha) of every layer after the same steps with sync_free on and off."""
    out = []
    for sync_free in (False, True):
        model, opt, x, y = _setup(cls, kwargs, scheme, bits, sync_free=sync_free)
        for _ in range(steps):
            opt.step(_closure(model, opt, x, y))
        out.append([(opt.state[p]["w"], opt.state[p]["b"], opt.state[p]["alpha"])
                    for p in opt.quantized_params()])
    return out


@pytest.mark.parametrize(("scheme", "bits"), STEPPED)
@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS)
def test_sync_free_training_equals_the_default_on_the_cpu(cls, kwargs, scheme, bits):
    host, device = _same_training(cls, kwargs, scheme, bits)
    for (w0, b0, a0), (w1, b1, a1) in zip(host, device, strict=True):
        if scheme == "lat-exact":  # alpha within float rounding (see above), so w too
            torch.testing.assert_close(w1, w0, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(a1, a0, rtol=1e-5, atol=0)
            assert (b1 == b0).float().mean() > 0.999
        else:
            assert torch.equal(w0, w1) and torch.equal(b0, b1) and torch.equal(a0, a1)


class _Allocations(TorchDispatchMode):
    """Records the size of every tensor an operation creates (an output sharing storage with
    no input), outside the paused closure."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.sizes: list[tuple[int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        inputs = {t.untyped_storage().data_ptr()
                  for t in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.sizes.append((t.numel(), str(func)))
        return out


# the meter's per-step record (n_tracked = 8 coordinates, a 7-slot accumulator) is the largest
# tensor a step may create; everything weight-sized must live in a buffer
SMALL = 16


@pytest.mark.parametrize(("scheme", "bits"), STEPPED)
@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS)
@pytest.mark.parametrize("sync_free", [True, False])
def test_no_allocation_after_the_first_step(cls, kwargs, scheme, bits, sync_free):
    """After the first step, a step creates no tensor of more than a few elements (only 0-dim
    scalars and the meter's 8-coordinate record); LAT exact's CPU pruning is the exception: its
    buckets and candidate sets have data-dependent sizes, far below the weight's."""
    model, opt, x, y = _setup(cls, kwargs, scheme, bits, sync_free=sync_free)
    opt.step(_closure(model, opt, x, y))
    counter = _Allocations()
    with counter:
        for _ in range(2):
            opt.step(_closure(model, opt, x, y, counter))
    largest = max(p.numel() for p in opt.quantized_params())
    big = [s for s in counter.sizes if s[0] > SMALL]
    if scheme == "lat-exact" and not sync_free:  # buckets and candidates, not weights
        assert all(n < largest // 2 for n, _ in big), sorted(big)[-5:]
        assert len(big) < 100 * 2
    else:
        assert not big, big
    assert counter.sizes  # the counter saw the step


# --- CUDA -----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "bits"), EVERY)
@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS)
def test_cuda_step_never_synchronises(cls, kwargs, scheme, bits):
    """Every scheme on the GPU: torch's sync debug mode raises on any synchronising call."""
    model, opt, x, y = _setup(cls, kwargs, scheme, bits, device="cuda")
    opt.step(_closure(model, opt, x, y))  # the first step allocates the buffers
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step(_closure(model, opt, x, y))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.zigzag.iteration == 4


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "bits"), EVERY)
@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS)
def test_cuda_steps_allocate_nothing_new(cls, kwargs, scheme, bits):
    """The CUDA caching allocator's counters: once the first steps have run, further steps do
    not grow the peak of allocated memory, and request no new segment from the driver."""
    model, opt, x, y = _setup(cls, kwargs, scheme, bits, device="cuda")
    closure = _closure(model, opt, x, y)
    for _ in range(2):
        opt.step(closure)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    opt.step(closure)
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()
    for _ in range(3):
        opt.step(closure)
    torch.cuda.synchronize()
    after = torch.cuda.memory_stats()
    assert after["allocated_bytes.all.peak"] == before["allocated_bytes.all.peak"]
    assert after["segment.all.allocated"] == before["segment.all.allocated"]


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_cuda_quantizer_matches_the_cpu_host_path(scheme, bits):
    """The GPU (sync-free) solver against the CPU default: the same levels but for weights within
    float rounding of a boundary, alpha close."""
    sch = get_scheme(scheme)
    for w, d in _drift(6, shape=(300, 400), steps=3):
        a_cpu, b_cpu = sch.solve_into(w, d, bits, None, Q.Workspace())
        a_gpu, b_gpu = sch.solve_into(w.cuda(), d.cuda(), bits, None, Q.Workspace())
        assert b_gpu.is_cuda and a_gpu.shape == ()
        assert (b_gpu.cpu() == b_cpu).float().mean() > 0.99
        assert math.isclose(float(a_gpu), float(a_cpu), rel_tol=1e-2)


def test_a_scheme_without_solve_into_is_called_through_solve():
    """A user's scheme with only ``solve`` (no workspace solver) still drives the optimizer."""
    calls = []

    def solve(w, d, bits, init):
        calls.append(init is None)
        return w.abs().mean(), torch.where(w >= 0, 1.0, -1.0)

    mine = Q.Scheme("mine-binary", (1,), False, solve, lambda bits: (1.0,))
    model, opt, x, y = _setup(LossAwareAdam, {}, mine, 1)
    for _ in range(2):
        opt.step(_closure(model, opt, x, y))
    n = len(opt.quantized_params())
    assert calls == [True] * n + [False] * (2 * n)  # the construction, then warm-started steps
    for p in opt.quantized_params():
        w = opt.state[p]["w"]
        torch.testing.assert_close(p.detach(), torch.where(w >= 0, 1.0, -1.0) * w.abs().mean())
