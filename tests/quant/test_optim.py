"""LossAwareAdam and BLAQ: the LAQ step against a hand-written reference, BLAQ's reductions to LAQ,
the trial pass, checkpoints, and the paper's toy problem."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.quant import available_schemes, get_scheme
from benchmark.quant.optim import BLAQ, LossAwareAdam, quantizable_weights
from benchmark.quant.zigzag import ZigZagMeter

# (scheme, bits) pairs to exercise; schemes that are not registered yet are skipped
SCHEMES = [("bwn", 1), ("lab", 1), ("twn", 2), ("lat-exact", 2), ("lat-approx", 2),
           ("laq-linear", 3), ("laq-log", 3)]


def _scheme_params(names: list[tuple[str, int]]) -> list:
    return [
        pytest.param(s, b, id=f"{s}-{b}",
                     marks=pytest.mark.skipif(s not in available_schemes(), reason=f"{s} not registered"))
        for s, b in names
    ]


class SmallNet(nn.Module):
    """Conv + BN + Linear + BN: every kind of parameter the optimizers treat differently."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.bn2 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 3, bias=False)
        self.bn3 = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv(x)))
        x = torch.relu(self.bn2(self.fc1(x.flatten(1))))
        return self.bn3(self.fc2(x))


def _net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def _batches(n: int = 30) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen))
            for _ in range(n)]


def _train(model: nn.Module, opt: LossAwareAdam, batches: list, epoch_len: int = 4,
           start: int = 0) -> list[float]:
    """Steps through ``batches``; the epoch is (start + i) // epoch_len, as set_epoch sees it."""
    losses = []
    for i, (x, y) in enumerate(batches):
        opt.set_epoch((start + i) // epoch_len)

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
    return losses


def _assert_same_run(m1: nn.Module, o1: LossAwareAdam, m2: nn.Module, o2: LossAwareAdam) -> None:
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key
    for p, q in zip(o1.quantized_params(), o2.quantized_params(), strict=True):
        for key in ("w", "exp_avg", "exp_avg_sq", "b", "alpha"):
            assert torch.equal(o1.state[p][key], o2.state[q][key]), key


def _same_run(m1: nn.Module, o1: LossAwareAdam, m2: nn.Module, o2: LossAwareAdam) -> bool:
    try:
        _assert_same_run(m1, o1, m2, o2)
    except AssertionError:
        return False
    return True


# --- the LAQ step ---------------------------------------------------------------------------


def test_step_matches_hand_written_reference() -> None:
    """Adam moments, d = (eps + sqrt(v_hat)) / lr, w <- clip(w - m_hat / d), w_hat = BWN(w)."""
    model = nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        model.weight.mul_(4)  # some weights start outside [-1, 1]: they must be clipped
    lr, (beta1, beta2), eps = 0.05, (0.9, 0.999), 1e-8
    w = model.weight.detach().clamp(-1, 1).clone()
    opt = LossAwareAdam(model, "bwn", lr=lr)
    assert torch.equal(model.weight, w.abs().mean() * torch.where(w >= 0, 1.0, -1.0))
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 6):
        x = torch.randn(3, 5, generator=gen)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        g = model.weight.grad.clone()
        opt.step()
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        d = (eps + (v / (1 - beta2**t)).sqrt()) / lr
        w = (w - m / (1 - beta1**t) / d).clamp(-1, 1)
        torch.testing.assert_close(opt.full_precision(model.weight), w, rtol=1e-6, atol=1e-7)
        alpha = w.abs().mean()
        torch.testing.assert_close(model.weight.detach(), alpha * torch.where(w >= 0, 1.0, -1.0))


def test_lab_uses_the_curvature() -> None:
    """LAB's alpha is the d-weighted mean of |w| with d = (eps + sqrt(v_hat)) / lr, not mean |w|."""
    model = nn.Linear(6, 5, bias=False)
    opt = LossAwareAdam(model, "lab", lr=0.01)
    x = torch.randn(4, 6) * torch.arange(1, 7)  # uneven gradients: uneven curvature
    opt.zero_grad()
    model(x).sum().backward()
    g = model.weight.grad.clone()
    opt.step()
    w = opt.full_precision(model.weight)
    d = (1e-8 + g.abs()) / 0.01  # after one step v_hat = g^2
    alpha = (d * w.abs()).sum() / d.sum()
    torch.testing.assert_close(model.weight.detach().abs(), alpha.expand_as(w), rtol=1e-5, atol=0)
    assert not torch.allclose(alpha, w.abs().mean(), rtol=1e-3)


@pytest.mark.parametrize(("scheme", "bits"), _scheme_params(SCHEMES))
def test_weights_are_levels_times_alpha_and_fp_weights_stay_clipped(scheme: str, bits: int) -> None:
    model = _net()
    opt = LossAwareAdam(model, scheme, bits=bits, lr=0.5)  # a large lr drives w against the clip
    _train(model, opt, _batches(6))
    levels = get_scheme(scheme).levels(bits)
    assert len(opt.quantized_params()) == 3
    for p in opt.quantized_params():
        st = opt.state[p]
        assert torch.equal(p.detach(), st["alpha"] * st["b"])
        assert torch.isin(st["b"], levels).all()
        w = st["w"]
        assert w.abs().max() <= 1.0
        assert w.abs().max() == 1.0  # the clip was active, not vacuous


def test_non_quantized_params_take_exactly_torch_adam_steps() -> None:
    model = _net()
    opt = LossAwareAdam(model, "lab", lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    quantized = {id(p) for p in opt.quantized_params()}
    others = [p for p in model.parameters() if id(p) not in quantized]
    assert len(others) == 7  # 3 BN affine pairs + fc1's bias
    twins = [nn.Parameter(p.detach().clone()) for p in others]
    ref = torch.optim.Adam(twins, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref, step_size=3, gamma=0.5)
    for x, y in _batches(8):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for p, q in zip(others, twins, strict=True):
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
        sched.step()
        ref_sched.step()
        for p, q in zip(others, twins, strict=True):
            assert torch.equal(p, q)


def test_lr_scheduler_sets_the_step_size() -> None:
    """A scheduler's lr (base 0.02 halved) gives exactly the run of an optimizer built with 0.01."""
    m1, m2 = _net(), _net()
    o1 = LossAwareAdam(m1, "lab", lr=0.02)
    torch.optim.lr_scheduler.LambdaLR(o1, lambda epoch: 0.5)
    o2 = LossAwareAdam(m2, "lab", lr=0.01)
    batches = _batches(5)
    _train(m1, o1, batches)
    _train(m2, o2, batches)
    _assert_same_run(m1, o1, m2, o2)


def test_first_and_last_layers_can_be_excluded() -> None:
    model = _net()
    opt = LossAwareAdam(model, "lab", quantize_first=False, quantize_last=False)
    assert opt.quantized_params() == [model.fc1.weight]
    assert quantizable_weights(model) == [model.conv.weight, model.fc1.weight, model.fc2.weight]
    conv_before = model.conv.weight.detach().clone()
    _train(model, opt, _batches(2))
    # the excluded first layer is a plain full-precision weight: not clipped, many distinct values
    assert model.conv.weight.unique().numel() > 2
    assert not torch.equal(model.conv.weight, conv_before)
    assert model.fc1.weight.abs().unique().numel() == 1


def test_a_layer_without_gradient_is_left_alone() -> None:
    class PartlyUsed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 3, bias=False)
            self.unused = nn.Linear(4, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    torch.manual_seed(0)
    model = PartlyUsed()
    opt = BLAQ(model, "lab", lr=0.05, m=1, zigzag=True)
    frozen = model.unused.weight.detach().clone()
    x = torch.randn(5, 4)
    for _ in range(3):
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    assert torch.equal(model.unused.weight, frozen)
    assert opt.state[model.unused.weight]["step"] == 0
    assert opt.state[model.used.weight]["step"] == 3
    assert opt.zigzag.iteration == 3


def test_bad_arguments_raise_user_errors() -> None:
    model = _net()
    with pytest.raises(UserError, match="scheme"):
        LossAwareAdam(model, "no-such-scheme")
    with pytest.raises(UserError, match="bits"):
        LossAwareAdam(model, "lab", bits=3)
    with pytest.raises(UserError, match="learning rate"):
        LossAwareAdam(model, "lab", lr=0.0)
    with pytest.raises(UserError, match="quantize"):
        LossAwareAdam(nn.Sequential(nn.Linear(2, 2)), quantize_first=False)
    with pytest.raises(UserError, match="float32"):
        LossAwareAdam(nn.Linear(2, 2).half())
    with pytest.raises(UserError, match="a "):
        BLAQ(model, a=1.5)
    with pytest.raises(UserError, match="period"):
        BLAQ(model, m=0)
    with pytest.raises(UserError, match="blend"):
        BLAQ(model, blend="average")
    with pytest.raises(UserError, match="keep_moments"):
        BLAQ(model, keep_moments="trial")
    opt = BLAQ(model, m=1)
    with pytest.raises(UserError, match="closure"):
        opt.step()


# --- BLAQ -----------------------------------------------------------------------------------

BLAQ_OPTIONS = [("moment", "blended"), ("moment", "current"), ("gradient", "blended"),
                ("gradient", "current")]


def _laq_and_blaq(blaq_kwargs: dict, steps: int = 24, scheme: str = "lab", bits: int = 1):
    batches = _batches(steps)
    m1, m2 = _net(), _net()
    o1 = LossAwareAdam(m1, scheme, bits=bits, lr=0.02)
    o2 = BLAQ(m2, scheme, bits=bits, lr=0.02, **blaq_kwargs)
    _train(m1, o1, batches)
    _train(m2, o2, batches)
    return m1, o1, m2, o2


@pytest.mark.parametrize(("blend", "keep"), BLAQ_OPTIONS)
def test_blaq_with_a_equal_1_is_laq_bit_for_bit(blend: str, keep: str) -> None:
    m1, o1, m2, o2 = _laq_and_blaq(dict(a=1.0, m=1, blend=blend, keep_moments=keep))
    assert o2.blaq_active
    _assert_same_run(m1, o1, m2, o2)


@pytest.mark.parametrize(("scheme", "bits"), _scheme_params([("lat-approx", 2), ("laq-linear", 3)]))
def test_blaq_with_a_equal_1_is_laq_bit_for_bit_with_warm_started_quantizers(
    scheme: str, bits: int
) -> None:
    m1, o1, m2, o2 = _laq_and_blaq(dict(a=1.0, m=1), scheme=scheme, bits=bits)
    _assert_same_run(m1, o1, m2, o2)


def test_blaq_without_an_active_epoch_is_laq_bit_for_bit() -> None:
    m1, o1, m2, o2 = _laq_and_blaq(dict(a=0.6, m=100))  # 24 steps, epochs 0..5: never active
    _assert_same_run(m1, o1, m2, o2)


@pytest.mark.parametrize(("blend", "keep"), BLAQ_OPTIONS)
def test_blaq_with_a_below_1_differs_from_laq(blend: str, keep: str) -> None:
    m1, o1, m2, o2 = _laq_and_blaq(dict(a=0.6, m=2, blend=blend, keep_moments=keep))
    assert not _same_run(m1, o1, m2, o2)


def test_blaq_active_only_in_every_mth_epoch() -> None:
    opt = BLAQ(_net(), m=3)
    active = []
    for epoch in range(7):
        opt.set_epoch(epoch)
        active.append(opt.blaq_active)
    assert active == [False, False, True, False, False, True, False]


@pytest.mark.parametrize(("blend", "keep"), BLAQ_OPTIONS)
def test_blaq_step_matches_the_formula(blend: str, keep: str) -> None:
    """One active step from a LAQ state at t-1, written out as docs/spec.md section 3 and our docstrings say."""
    a, lr, (beta1, beta2), eps = 0.6, 0.05, (0.9, 0.999), 1e-8
    torch.manual_seed(3)
    model = nn.Linear(5, 4, bias=False)
    opt = BLAQ(model, "bwn", lr=lr, a=a, m=2, blend=blend, keep_moments=keep)
    x = torch.randn(6, 5)

    def loss_fn() -> torch.Tensor:
        return (model(x) - 0.3).pow(2).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)  # epoch 0: a LAQ step
    p = model.weight
    st = opt.state[p]
    w, m, v = st["w"].clone(), st["exp_avg"].clone(), st["exp_avg_sq"].clone()
    g1 = torch.autograd.grad(loss_fn(), p)[0]
    t = 2
    bc1, bc2 = (lambda k: 1 - beta1**k), (lambda k: 1 - beta2**k)
    m1, v1 = beta1 * m + (1 - beta1) * g1, beta2 * v + (1 - beta2) * g1 * g1
    d1 = (eps + (v1 / bc2(t)).sqrt()) / lr
    w_trial = (w - m1 / bc1(t) / d1).clamp(-1, 1)
    with torch.no_grad():
        p.copy_(w_trial.abs().mean() * torch.where(w_trial >= 0, 1.0, -1.0))
    g2 = torch.autograd.grad(loss_fn(), p)[0]
    if blend == "moment":
        m2, v2 = beta1 * m1 + (1 - beta1) * g2, beta2 * v1 + (1 - beta2) * g2 * g2
        d2 = (eps + (v2 / bc2(t + 1)).sqrt()) / lr
        g_comb = a * m1 / bc1(t) + (1 - a) * m2 / bc1(t + 1)
        d_comb = a * d1 + (1 - a) * d2
        blended = (a * m1 + (1 - a) * m2, a * v1 + (1 - a) * v2)
    else:
        g = a * g1 + (1 - a) * g2
        mb, vb = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        g_comb, d_comb = mb / bc1(t), (eps + (vb / bc2(t)).sqrt()) / lr
        blended = (mb, vb)
    expected = (w - g_comb / d_comb).clamp(-1, 1)
    kept = blended if keep == "blended" else (m1, v1)
    with torch.no_grad():
        p.copy_(st["alpha"] * st["b"])  # back to w_hat_t for the optimizer's own first pass
    opt.set_epoch(1)
    opt.step(closure)
    torch.testing.assert_close(st["w"], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg"], kept[0], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(st["exp_avg_sq"], kept[1], rtol=1e-5, atol=1e-12)
    assert st["step"] == t
    assert not torch.allclose(expected, (w - m1 / bc1(t) / d1).clamp(-1, 1), rtol=1e-4)  # not LAQ


def test_trial_pass_leaves_batch_norm_statistics_untouched() -> None:
    model = _net()
    opt = BLAQ(model, "lab", lr=0.05, m=1)
    (x, y), = _batches(1)
    seen: list[dict[str, torch.Tensor]] = []

    def closure() -> torch.Tensor:
        seen.append(copy.deepcopy(model.state_dict()))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = copy.deepcopy(model.state_dict())
    opt.step(closure)
    assert len(seen) == 2  # a first pass and a trial pass
    after_first = {k: v for k, v in seen[1].items() if "running" in k or "num_batches" in k}
    assert after_first  # the model has running statistics at all
    for key, value in after_first.items():
        assert not torch.equal(value, before[key]), key  # the first pass did update them
        assert torch.equal(model.state_dict()[key], value), key  # the trial pass did not
    assert int(model.bn1.num_batches_tracked) == 1
    assert not torch.equal(model.fc1.weight, before["fc1.weight"])  # and the step moved the weights


def test_meter_sees_the_backtracked_step_not_the_trial_point() -> None:
    model = _net()
    opt = BLAQ(model, "lab", lr=0.05, a=0.5, m=1, zigzag=True)
    (x, y), = _batches(1)
    updates = []
    for _ in range(3):
        before = [p.detach().clone() for p in opt.quantized_params()]
        calls: list[torch.Tensor] = []

        def closure(calls: list[torch.Tensor] = calls) -> torch.Tensor:
            calls.append(model.fc1.weight.detach().clone())
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        assert not torch.equal(calls[1], model.fc1.weight)  # the trial point is not where we end
        after = [p.detach() for p in opt.quantized_params()]
        updates.append(torch.cat([(q - p).reshape(-1) for p, q in zip(before, after, strict=True)]))
    trace = opt.zigzag.pop_trace()
    expected = [torch.nn.functional.cosine_similarity(u, v, dim=0).item()
                for u, v in zip(updates[1:], updates, strict=False)]
    assert trace["cosine"][1:].tolist() == pytest.approx(expected, rel=1e-4)
    assert torch.equal(torch.as_tensor(trace["traj_w_hat"][-1]),
                       model.conv.weight.detach().reshape(-1)[opt.zigzag._tracked])


def test_save_reload_continue_is_bitwise_identical(tmp_path) -> None:
    batches = _batches(16)
    kwargs = dict(scheme="lab", lr=0.02, a=0.6, m=2)
    ref_model = _net()
    ref = BLAQ(ref_model, zigzag=True, **kwargs)
    _train(ref_model, ref, batches, epoch_len=4)

    model = _net()
    opt = BLAQ(model, zigzag=True, **kwargs)
    _train(model, opt, batches[:6], epoch_len=4)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    _train(model, opt, batches[6:], epoch_len=4, start=6)  # the checkpoint must not alias the state

    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    fresh_model = _net(seed=99)  # different initial weights: all must come from the checkpoint
    fresh = BLAQ(fresh_model, zigzag=True, **kwargs)
    fresh_model.load_state_dict(ckpt["model"])
    fresh.load_state_dict(ckpt["opt"])
    assert fresh.epoch == 1
    _train(fresh_model, fresh, batches[6:], epoch_len=4, start=6)
    _assert_same_run(ref_model, ref, fresh_model, fresh)
    assert ref.zigzag.epoch_summary() == pytest.approx(fresh.zigzag.epoch_summary(), nan_ok=True)


def test_load_state_dict_restores_the_quantized_weights_in_the_model() -> None:
    model = _net()
    opt = LossAwareAdam(model, "lab")
    _train(model, opt, _batches(3))
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    other = _net(seed=5)
    other_opt = LossAwareAdam(other, "lab")
    other_opt.load_state_dict(torch.load(buf, weights_only=True))
    for p, q in zip(opt.quantized_params(), other_opt.quantized_params(), strict=True):
        assert torch.equal(p, q)


def test_load_state_dict_refuses_another_scheme() -> None:
    state = LossAwareAdam(_net(), "lab").state_dict()
    with pytest.raises(UserError, match="scheme 'lab'"):
        LossAwareAdam(_net(), "bwn").load_state_dict(state)


def test_zigzag_is_off_by_default_and_then_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the meter was called while off")

    monkeypatch.setattr(ZigZagMeter, "update", fail)
    model = _net()
    opt = BLAQ(model, m=2)
    assert opt.zigzag is None
    _train(model, opt, _batches(4), epoch_len=2)


def test_zigzag_meter_can_be_passed_in() -> None:
    meter = ZigZagMeter(n_tracked=3)
    model = _net()
    opt = LossAwareAdam(model, zigzag=meter)
    _train(model, opt, _batches(3))
    assert opt.zigzag is meter
    assert meter.iteration == 3
    assert meter.pop_trace()["traj_w"].shape == (3, 3)


def test_channels_last_model_with_meter() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4)).to(memory_format=torch.channels_last)
    opt = LossAwareAdam(model, "lab", lr=0.01, zigzag=True)
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    conv = model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(conv, opt.state[conv]["alpha"] * opt.state[conv]["b"])
    assert -1.0 <= opt.zigzag.epoch_summary()["zz_cosine"] <= 1.0


# --- the paper's toy problem ------------------------------------------------------------------


def _toy_run(make_opt: Callable[[nn.Module], LossAwareAdam], steps: int = 300) -> torch.Tensor:
    """f(w_hat) = |w_hat|^(3/2) on one binary weight (w_hat = alpha * sign(w)); returns w_hat_t."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.5)
    opt = make_opt(model)
    opt.set_epoch(0)
    x = torch.ones(1, 1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).abs().pow(1.5).sum()
        loss.backward()
        return loss

    trajectory = []
    for _ in range(steps):
        opt.step(closure)
        trajectory.append(model.weight.detach().item())
    return torch.tensor(trajectory, dtype=torch.float64)


def test_toy_problem_laq_zigzags_forever_and_blaq_does_not() -> None:
    """The paper's example: with no momentum (a proximal Newton step with Adam's curvature),
    LAQ's w_hat jumps between +alpha and -alpha forever; BLAQ's look-ahead stops the jumps."""
    laq = _toy_run(lambda m: LossAwareAdam(m, "lab", lr=0.1, betas=(0.0, 0.999)))
    blaq = _toy_run(lambda m: BLAQ(m, "lab", lr=0.1, betas=(0.0, 0.999), a=0.6, m=1))
    tail_laq, tail_blaq = laq[-100:], blaq[-100:]
    # LAQ: every step flips the sign at (nearly) the same magnitude, and it does not die out
    assert (tail_laq[1:] * tail_laq[:-1] < 0).all()
    torch.testing.assert_close(tail_laq[1:].abs(), tail_laq[:-1].abs(), rtol=0.05, atol=0)
    assert laq[-1].abs() >= 0.9 * laq[-100].abs()
    # BLAQ: the sign settles and the steps are tiny next to LAQ's jumps of 2 alpha
    assert (tail_blaq[1:] * tail_blaq[:-1] < 0).sum() <= 2
    assert tail_blaq.diff().abs().mean() < 0.01 * tail_laq.diff().abs().mean()
    assert blaq[-1].abs() < 0.6 * tail_laq.abs().min()


# --- CUDA -----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [LossAwareAdam, BLAQ])
def test_cuda_matches_cpu(cls: type[LossAwareAdam]) -> None:
    batches = _batches(3)
    kwargs = dict(lr=0.02) if cls is LossAwareAdam else dict(lr=0.02, a=0.6, m=1)
    cpu_model = _net()
    cpu = cls(cpu_model, "lab", zigzag=True, **kwargs)
    _train(cpu_model, cpu, batches)
    gpu_model = _net().cuda()
    gpu = cls(gpu_model, "lab", zigzag=True, **kwargs)
    _train(gpu_model, gpu, [(x.cuda(), y.cuda()) for x, y in batches])
    for p, q in zip(cpu.quantized_params(), gpu.quantized_params(), strict=True):
        assert q.device.type == "cuda" and gpu.state[q]["w"].device.type == "cuda"
        torch.testing.assert_close(gpu.state[q]["w"].cpu(), cpu.state[p]["w"], rtol=1e-4, atol=1e-5)
        # a weight within rounding of 0 may take the other sign; nearly all levels agree
        assert (gpu.state[q]["b"].cpu() == cpu.state[p]["b"]).float().mean() > 0.99
    for key, value in cpu_model.state_dict().items():
        if "running" in key:
            torch.testing.assert_close(gpu_model.state_dict()[key].cpu(), value, rtol=1e-3, atol=1e-4)
    assert cpu.zigzag.iteration == gpu.zigzag.iteration == 3


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [LossAwareAdam, BLAQ])
def test_cuda_step_never_waits_for_the_device(cls: type[LossAwareAdam]) -> None:
    """No host-device synchronisation inside step() (the zig-zag meter included)."""
    model = _net().cuda()
    opt = cls(model, "lab", lr=0.02, zigzag=True, **({} if cls is LossAwareAdam else {"m": 1}))
    x, y = (t.cuda() for t in _batches(1)[0])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)  # the first step allocates the meter's buffers
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            opt.step(closure)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.zigzag.iteration == 3
