"""The compiled fast path (``compile=True``, ``benchmark.quant.fused``) against the eager path.

Tolerance (stated in docs/choices.md): a fused kernel sums in another order, so after the same
step from the same state the full-precision weights and moments agree to 1e-5 relative, every
layer's alpha to 1e-4 relative, and at most 1% of the levels differ (a weight on a rounding
boundary may take the neighbouring level; on these tiny layers almost always none does).
The compiled functions are built once per shape (seconds each, then in inductor's disk cache):
the tests use tiny layers and few steps, and are marked ``slow``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.quant import BLAQ, LossAwareAdam, ZigZagMeter, fused

REASON = fused.available("cpu")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=f"torch.compile unavailable: {REASON}")]

SCHEMES = [("bwn", 1), ("twn", 2), ("lab", 1), ("lat-exact", 2),  # lat-approx: laq-linear at n = 1
           ("laq-linear", 3), ("laq-log", 3)]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))


def _pair(make, before: int = 3):
    """(eager, compiled): two equal runs of ``before`` eager steps, then the same next step
    taken eagerly and with ``compile=True``, from the same state on the same batch.
    (Over many steps the two drift apart as any two float orders do: Adam amplifies the sign of
    near-zero gradients, so only one step from a common state is compared.)"""
    torch.manual_seed(1)
    x, y = torch.randn(32, 12), torch.randint(0, 5, (32,))
    runs = []
    for compiled in (False, True):
        model = _model()
        opt = make(model)

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(before):  # eager: the two runs are equal bit for bit so far
            opt.step(closure)
        opt.compile = compiled
        if opt.zigzag is not None:
            opt.zigzag.compile = compiled
        opt.step(closure)
        runs.append((model, opt))
    return runs


def _assert_close(eager, compiled) -> None:
    (_, o0), (_, o1) = eager, compiled
    for p0, p1 in zip(o0.quantized_params(), o1.quantized_params(), strict=True):
        s0, s1 = o0.state[p0], o1.state[p1]
        for key in ("w", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s1[key], s0[key], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(s1["alpha"], s0["alpha"], rtol=1e-4, atol=1e-7)
        differ = (s1["b"] != s0["b"]).float().mean().item()
        assert differ <= 0.01, differ
        torch.testing.assert_close(p1.detach(), s1["b"] * s1["alpha"])  # w_hat = alpha * b
        assert p0.detach().ne(0).any()  # something non-trivial was compared


@pytest.mark.parametrize(("scheme", "bits"), SCHEMES)
def test_laq_step_matches_eager(scheme: str, bits: int) -> None:
    _assert_close(*_pair(lambda m: LossAwareAdam(m, scheme, bits=bits, lr=1e-2)))


@pytest.mark.parametrize(("scheme", "bits", "blend", "keep"), [
    ("lab", 1, "moment", "blended"), ("laq-linear", 3, "moment", "current"),
    ("lab", 1, "gradient", "blended")])
def test_blaq_step_matches_eager(scheme: str, bits: int, blend: str, keep: str) -> None:
    _assert_close(*_pair(lambda m: BLAQ(m, scheme, bits=bits, lr=1e-2, m=1, blend=blend,
                                        keep_moments=keep)))


@pytest.mark.parametrize("rounds", [1, None])
@pytest.mark.parametrize("sync_free", [False, True])
def test_round_cap_and_sync_free_match_eager(rounds, sync_free) -> None:
    """The sync-free form (every round run, frozen on the device: what a GPU runs) and the
    host-reading one give the eager results, with and without the round cap."""
    _assert_close(*_pair(lambda m: LossAwareAdam(m, "laq-log", bits=3, lr=1e-2, rounds=rounds,
                                                 sync_free=sync_free)))


def test_cold_start_matches_eager() -> None:
    """A warm start with no use (levels all 0) falls back to the cold rounding, as eager does."""
    def make(m):
        opt = LossAwareAdam(m, "laq-linear", bits=3, lr=1e-2)
        for p in opt.quantized_params():
            opt.state[p]["b"].zero_()
        return opt
    _assert_close(*_pair(make, before=0))


def test_meter_matches_eager() -> None:
    torch.manual_seed(2)
    shapes = [(16, 12), (5, 16)]
    meters = [ZigZagMeter(compile=c) for c in (False, True)]
    b = [torch.randint(-3, 4, s).float() / 3 for s in shapes]
    a = [torch.rand(()) for _ in shapes]
    for _ in range(5):
        b_new = [torch.randint(-3, 4, s).float() / 3 for s in shapes]
        a_new = [torch.rand(()) for _ in shapes]
        for meter in meters:
            meter.update(a, b, a_new, b_new, [3, 3], b_new[0])
        a, b = a_new, b_new
    sums = [meter.epoch_summary() for meter in meters]
    for key, value in sums[0].items():
        assert value == value, key  # defined: a real comparison
        assert sums[1][key] == pytest.approx(value, rel=1e-5), key
    torch.testing.assert_close(meters[1]._freq[0], meters[0]._freq[0])
    torch.testing.assert_close(meters[1]._dir[1], meters[0]._dir[1])


def test_compile_option_is_checked() -> None:
    with pytest.raises(UserError, match="compile must be True or False"):
        LossAwareAdam(_model(), "lab", compile="yes")


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "bits"), [("lab", 1), ("twn", 2), ("laq-log", 3)])
def test_cuda_compiled_step_never_synchronises(scheme: str, bits: int) -> None:
    """On a GPU the compiled step (Triton kernels; the alternation frozen on the device) reads
    nothing on the host, the meter included."""
    reason = fused.available("cuda")
    if reason is not None:
        pytest.skip(f"torch.compile unavailable on cuda: {reason}")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5)).cuda()
    opt = LossAwareAdam(model, scheme, bits=bits, lr=1e-2, zigzag=True, compile=True)
    x, y = torch.randn(32, 12, device="cuda"), torch.randint(0, 5, (32,), device="cuda")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(2):  # compiles (and allocates the buffers)
        opt.step(closure)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step(closure)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.zigzag.iteration == 5


@pytest.mark.parametrize(("scheme", "bits"), [("lab", 1), ("laq-linear", 3)])
def test_compiled_steps_do_not_recompile_as_the_scalars_change(scheme: str, bits: int) -> None:
    """The bias corrections and BLAQ's blend weights change every step: the kernels take them as
    arguments (12 steps: beyond dynamo's 8 recompilations, which fullgraph turns into an error)."""
    torch.manual_seed(0)
    model = _model()
    opt = BLAQ(model, scheme, bits=bits, lr=1e-2, m=1, zigzag=True, compile=True)
    x, y = torch.randn(32, 12), torch.randint(0, 5, (32,))

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    losses = [opt.step(closure).detach().item() for _ in range(12)]
    assert losses[-1] < losses[0]


# --- LAT exact: the windowed solve (benchmark.quant.fused_lat) --------------------------------


def _lat_runs(make, warm: int, shift: float | None = None):
    """Two equal compiled runs of ``warm`` steps (the first step solves exactly and centres the
    windows, the later ones take the windows), then one more step from that state, eager in the
    first run and compiled in the second; ``shift`` first moves the second run's predictions by
    that factor (a miss: the fallback). Returns the runs, the second run's windows and their hit
    and miss counts before the compared step."""
    torch.manual_seed(1)
    x, y = torch.randn(64, 24), torch.randint(0, 5, (64,))
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(24, 384), nn.ReLU(), nn.Linear(384, 5))
        opt = make(model, True)

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(warm):  # the two runs are equal bit for bit so far
            opt.step(closure)
        windows = list(opt._lat_windows.values())
        assert windows and any(win.hits for win in windows)  # the window path ran
        if compiled and shift is not None:
            for win in windows:
                win.center *= shift
        hits, misses = [win.hits for win in windows], [win.misses for win in windows]
        opt.compile = compiled
        opt.step(closure)
        runs.append((model, opt))
    return runs[0], runs[1], windows, hits, misses


@pytest.fixture(params=["native", "inductor"])
def lat_sums(request, monkeypatch):
    """LAT exact's bin sums by ``lat_bins.c`` (where it builds, the default) or by inductor."""
    from benchmark.quant import fused_lat, native

    if request.param == "inductor":
        monkeypatch.setattr(fused_lat, "_native", lambda: None)
    elif fused_lat._native() is None:
        reason = native.lat_bins(fused_lat._EDGES, fused_lat._BELOW)[1]
        if native._compiler() is None:
            pytest.skip(reason)
        pytest.fail(reason)
    return request.param


@pytest.mark.usefixtures("lat_sums")
def test_lat_exact_windowed_steps_match_eager():
    eager, compiled, windows, hits, _ = _lat_runs(
        lambda m, c: LossAwareAdam(m, "lat-exact", bits=2, lr=1e-3, compile=c), warm=5)
    _assert_close(eager, compiled)
    assert windows[0].hits > hits[0]  # the compared step took the window on the big layer


@pytest.mark.usefixtures("lat_sums")
def test_lat_exact_window_miss_falls_back_to_the_exact_method():
    eager, compiled, windows, _, misses = _lat_runs(
        lambda m, c: LossAwareAdam(m, "lat-exact", bits=2, lr=1e-3, compile=c), warm=4, shift=3.0)
    _assert_close(eager, compiled)
    assert all(win.misses > n for win, n in zip(windows, misses, strict=True))


@pytest.mark.usefixtures("lat_sums")
def test_blaq_lat_exact_windowed_matches_eager():
    """The trial point and the backtrack solve in the window. (At this learning rate the compiled
    backtrack update itself, whatever the scheme, lab included, puts a few weights 1e-5 relative
    off the eager ones, so w is compared to 1% of a step here; the quantizer's results at the
    stated tolerance.)"""
    (_, o0), (_, o1), windows, hits, _ = _lat_runs(
        lambda m, c: BLAQ(m, "lat-exact", bits=2, lr=1e-3, m=1, compile=c), warm=4)
    for p0, p1 in zip(o0.quantized_params(), o1.quantized_params(), strict=True):
        s0, s1 = o0.state[p0], o1.state[p1]
        torch.testing.assert_close(s1["w"], s0["w"], rtol=1e-4, atol=1e-5)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s1[key], s0[key], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(s1["alpha"], s0["alpha"], rtol=1e-4, atol=1e-7)
        assert (s1["b"] != s0["b"]).float().mean().item() <= 0.01
        torch.testing.assert_close(p1.detach(), s1["b"] * s1["alpha"])
    assert windows[0].hits > hits[0]  # the trial point or the backtrack took the window


def test_lat_exact_sync_free_keeps_the_eager_quantizer():
    """sync_free forbids host reads: the windowed path (which reads sums) is not taken."""
    torch.manual_seed(0)
    model = _model()
    opt = LossAwareAdam(model, "lat-exact", bits=2, lr=1e-2, compile=True, sync_free=True)
    x, y = torch.randn(32, 12), torch.randint(0, 5, (32,))
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert not opt._lat_windows


@pytest.mark.usefixtures("lat_sums")
@pytest.mark.parametrize("cls", [LossAwareAdam, BLAQ])
def test_a_resumed_compiled_lat_exact_run_equals_the_uninterrupted_one(cls) -> None:
    """The LAT exact windows (where the next threshold is looked for) travel in the checkpoint:
    a resumed run tries the same windows, so it sums in the same order, bit for bit."""
    import copy

    torch.manual_seed(1)
    x, y = torch.randn(32, 12), torch.randint(0, 5, (32,))
    extra = {"a": 0.6, "m": 1} if cls is BLAQ else {}

    def build():
        model = _model()
        return model, cls(model, "lat-exact", bits=2, lr=0.01, compile=True, **extra)

    def steps(model, opt, n):
        for _ in range(n):
            def closure():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss
            opt.step(closure)

    model, opt = build()
    steps(model, opt, 4)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    assert saved[1]["lat_windows"]  # the windows are in the checkpoint
    steps(model, opt, 3)
    again, opt2 = build()
    again.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    steps(again, opt2, 3)
    for p0, p1 in zip(opt.quantized_params(), opt2.quantized_params(), strict=True):
        assert torch.equal(p0, p1)
        assert torch.equal(opt.state[p0]["w"], opt2.state[p1]["w"])
        assert torch.equal(opt.state[p0]["alpha"], opt2.state[p1]["alpha"])
    assert [w.state() for w in opt._lat_windows.values()] == [
        w.state() for w in opt2._lat_windows.values()]
