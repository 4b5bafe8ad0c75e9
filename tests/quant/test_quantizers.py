"""Tests of the quantizers against exhaustive search, closed forms and reference roundings."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.quant import (
    Scheme,
    available_schemes,
    get_scheme,
    quantize,
    quantize_with_levels,
    register_scheme,
)
from benchmark.quant import quantizers as Q

ALL = ["bwn", "lab", "lat-approx", "lat-exact", "laq-linear", "laq-log", "twn"]
ITERATIVE = [("lat-approx", 2)] + [(s, b) for s in ("laq-linear", "laq-log") for b in (2, 3, 4)]
EVERY = [("bwn", 1), ("twn", 2), ("lab", 1), ("lat-exact", 2), *ITERATIVE]
SETTINGS = settings(max_examples=60, deadline=None)


# --- references, written independently of the implementation --------------------------------


def objective(w: torch.Tensor, d: torch.Tensor | None, alpha: float, b: torch.Tensor) -> float:
    w, b = w.double(), b.double()
    d = torch.ones_like(w) if d is None else d.double()
    return float((d * (w - alpha * b) ** 2).sum())


def best_alpha_objective(w: torch.Tensor, d: torch.Tensor | None, b: torch.Tensor) -> float:
    """Objective of levels b with their best scale alpha >= 0."""
    w, b = w.double(), b.double()
    d = torch.ones_like(w) if d is None else d.double()
    num, den = float((d * w * b).sum()), float((d * b * b).sum())
    alpha = num / den if num > 0 and den > 0 else 0.0
    return objective(w, d, alpha, b)


def exhaustive_optimum(w: torch.Tensor, d: torch.Tensor, levels: list[float]) -> float:
    """min over b in Q^n (each with its best alpha > 0) of sum d (w - alpha b)^2."""
    w, d = w.double().flatten(), d.double().flatten()
    combos = torch.tensor(list(itertools.product(levels, repeat=w.numel())), dtype=torch.float64)
    num, den = combos @ (d * w), (combos * combos) @ d
    total = float((d * w * w).sum())
    gain = torch.where((num > 0) & (den > 0), num * num / den.clamp(min=1e-300), 0.0)
    return total - float(gain.max())


def ref_round_linear(x: np.ndarray, n: int) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * n) / n  # numpy rounds half to even


def ref_round_log(x: np.ndarray, n: int) -> np.ndarray:
    mag = np.abs(x)
    with np.errstate(divide="ignore"):
        e = np.clip(np.floor(np.log2(mag) + 0.5), -(n - 1), 0)
    return np.sign(x) * np.where(mag >= 2.0**-n, 2.0**e, 0.0)


def ref_lat_exact(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The optimal ternary levels by the sorted-prefix method in float64 (ties kept together)."""
    a = np.abs(w.double().numpy()).ravel()
    dd = d.double().numpy().ravel()
    order = np.argsort(-a, kind="stable")
    a, dd = a[order], dd[order]
    s1, s0 = np.cumsum(dd * a), np.cumsum(dd)
    closed = np.append(a[:-1] > a[1:], True) & (a > 0) & (s0 > 0)
    gain = np.where(closed, s1**2 / np.where(s0 > 0, s0, 1), 0)
    if gain.max() <= 0:
        return torch.zeros_like(w)
    threshold = a[int(np.argmax(gain))]
    return torch.sign(w) * (w.abs() >= threshold)


def levels_of(scheme: str, bits: int) -> list[float]:
    return get_scheme(scheme).levels(bits, dtype=torch.float64).tolist()


def in_level_set(b: torch.Tensor, scheme: str, bits: int) -> bool:
    lv = get_scheme(scheme).levels(bits, dtype=b.dtype)
    return bool(torch.isin(b, lv).all())


def max_len(scheme: str, bits: int) -> int:
    """Largest n with |Q|^n small enough to enumerate quickly."""
    count = len(levels_of(scheme, bits))
    return max(1, min(7, int(math.log(3000) / math.log(count))))


weights = st.floats(-1.0, 1.0, allow_subnormal=False)
curvatures = st.floats(0.05, 10.0)


@st.composite
def problems(draw, max_n: int = 7, with_init: str | None = None, bits: int = 2):
    n = draw(st.integers(1, max_n))
    w = torch.tensor(draw(st.lists(weights, min_size=n, max_size=n)), dtype=torch.float64)
    d = torch.tensor(draw(st.lists(curvatures, min_size=n, max_size=n)), dtype=torch.float64)
    init = None
    if with_init is not None:
        lv = levels_of(with_init, bits)
        init = torch.tensor(draw(st.lists(st.sampled_from(lv), min_size=n, max_size=n)),
                            dtype=torch.float64)
    return w, d, init


# --- the registry -------------------------------------------------------------------------------


def test_listing_has_all_seven_schemes():
    assert set(ALL) <= set(available_schemes())
    assert available_schemes() == sorted(available_schemes())


@pytest.mark.parametrize(
    ("name", "bits", "loss_aware"),
    [("bwn", (1,), False), ("twn", (2,), False), ("lab", (1,), True), ("lat-exact", (2,), True),
     ("lat-approx", (2,), True), ("laq-linear", tuple(range(2, 9)), True),
     ("laq-log", tuple(range(2, 9)), True)],
)
def test_scheme_bits_and_curvature_flag(name, bits, loss_aware):
    scheme = get_scheme(name)
    assert scheme.name == name and scheme.bits == bits and scheme.loss_aware is loss_aware
    for b in bits:
        scheme.check_bits(b)


def test_unknown_scheme_names_the_valid_choices():
    with pytest.raises(ValueError, match="unknown quantizer scheme 'ternary'.*lat-exact.*twn"):
        get_scheme("ternary")
    with pytest.raises(UserError):
        quantize(torch.ones(3), "ternary")


@pytest.mark.parametrize(("name", "bad"), [("lab", 2), ("lat-exact", 1), ("laq-log", 9),
                                           ("laq-linear", 1), ("twn", True)])
def test_unsupported_bits_name_the_valid_choices(name, bad):
    valid = ", ".join(map(str, get_scheme(name).bits))
    with pytest.raises(UserError, match=f"supports bits {valid}, not"):
        quantize(torch.ones(3), name, bad)


def test_level_sets_and_step_counts():
    lin3 = get_scheme("laq-linear").levels(3).tolist()
    assert lin3 == pytest.approx([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1])
    assert get_scheme("laq-log").levels(3).tolist() == [-1, -0.5, -0.25, 0, 0.25, 0.5, 1]
    assert get_scheme("laq-log").levels(4).tolist()[8:] == [2.0**-j for j in range(6, -1, -1)]
    assert get_scheme("laq-linear").levels(2).tolist() == [-1, 0, 1]  # 2-bit linear is ternary
    assert get_scheme("lab").levels(1).tolist() == [-1, 1]
    assert get_scheme("twn").levels(2).dtype == torch.float32
    assert get_scheme("lat-exact").levels(2, dtype=torch.float64).dtype == torch.float64
    for bits in range(2, 9):
        assert get_scheme("laq-linear").levels(bits).numel() == 2**bits - 1
        assert get_scheme("laq-log").step_count(bits) == 2 ** (bits - 1) - 1
    assert [get_scheme(s).step_count(b) for s, b in EVERY[:4]] == [1, 1, 1, 1]
    with pytest.raises(UserError):
        get_scheme("laq-log").step_count(1)


def test_register_scheme_adds_one_that_quantize_can_use(monkeypatch):
    monkeypatch.setattr(Q, "_SCHEMES", dict(Q._SCHEMES))

    def sign_max(w, d, bits, init):
        return w.abs().max(), torch.sign(w)

    register_scheme(Scheme("sign-max", (1,), False, sign_max, lambda bits: (1.0,)))
    assert "sign-max" in available_schemes()
    w = torch.tensor([0.5, -2.0, 1.0])
    assert quantize(w, "sign-max").tolist() == [2.0, -2.0, 2.0]
    assert get_scheme("sign-max").levels(1).tolist() == [-1.0, 1.0]


# --- exhaustive oracle --------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "bits"), [("lab", 1), ("lat-exact", 2)])
@SETTINGS
@given(data=st.data())
def test_exact_schemes_reach_the_exhaustive_optimum(scheme, bits, data):
    w, d, _ = data.draw(problems(max_n=7))
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    assert in_level_set(b, scheme, bits)
    best = exhaustive_optimum(w, d, levels_of(scheme, bits))
    got = objective(w, d, float(alpha), b)
    assert got <= best * (1 + 1e-6) + 1e-12
    assert got == pytest.approx(best_alpha_objective(w, d, b), rel=1e-9, abs=1e-12)


@SETTINGS
@given(data=st.data())
def test_lat_exact_support_is_self_consistent(data):
    """The optimal support is its own rounding: |w| > alpha/2 inside, |w| <= alpha/2 outside."""
    w, d, _ = data.draw(problems(max_n=7))
    alpha, b = quantize_with_levels(w, "lat-exact", 2, d)
    a = w.abs()
    inside = b != 0
    assert bool((a[inside] > alpha / 2 * (1 - 1e-12)).all())
    assert bool((a[~inside] <= alpha / 2 * (1 + 1e-12)).all())


@pytest.mark.parametrize(("scheme", "bits"), ITERATIVE)
@SETTINGS
@given(data=st.data())
def test_iterative_schemes_improve_their_start_and_are_fixed_points(scheme, bits, data):
    w, d, init = data.draw(problems(max_n=max_len(scheme, bits), with_init=scheme, bits=bits))
    for start in (init, None):
        alpha, b = quantize_with_levels(w, scheme, bits, d, init=start)
        assert in_level_set(b, scheme, bits)
        a = float(alpha)
        assert a > 0 or (a == 0 and not bool(b.any()))
        got = objective(w, d, a, b)
        # alpha is the best scale for b, and nothing beats the exhaustive optimum
        assert got == pytest.approx(best_alpha_objective(w, d, b), rel=1e-9, abs=1e-12)
        assert got >= exhaustive_optimum(w, d, levels_of(scheme, bits)) * (1 - 1e-9) - 1e-12
        if start is not None:
            assert got <= best_alpha_objective(w, d, start) * (1 + 1e-9) + 1e-12
        else:  # the documented cold start: the rounding at alpha0 = 4n/(2n+1) mean|w|
            n = get_scheme(scheme).step_count(bits)
            alpha0 = 4 * n / (2 * n + 1) * float(w.abs().mean())
            rnd = ref_round_log if scheme == "laq-log" else ref_round_linear
            b0 = torch.from_numpy(rnd(w.numpy() / alpha0, n)) if alpha0 > 0 else w * 0
            assert got <= best_alpha_objective(w, d, b0) * (1 + 1e-9) + 1e-12
        again = quantize_with_levels(w, scheme, bits, d, init=b)
        assert torch.equal(again[0], alpha) and torch.equal(again[1], b)


@pytest.mark.parametrize(("scheme", "bits"), [("laq-linear", 3), ("laq-log", 3), ("laq-log", 4)])
@SETTINGS
@given(data=st.data())
def test_iterative_result_is_not_improved_by_its_own_rounding(scheme, bits, data):
    """At the returned alpha the scheme's rounding gives b back, or nothing better."""
    w, d, _ = data.draw(problems(max_n=max_len(scheme, bits)))
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    if float(alpha) == 0:
        return
    n = get_scheme(scheme).step_count(bits)
    rnd = ref_round_log if scheme == "laq-log" else ref_round_linear
    again = torch.from_numpy(rnd(w.numpy() / float(alpha), n))
    if not torch.equal(again, b):
        assert best_alpha_objective(w, d, again) >= objective(w, d, float(alpha), b) * (1 - 1e-9)


def test_laq_2bit_linear_and_log_are_lat_approx():
    torch.manual_seed(1)
    w, d = torch.randn(40, 30) * 0.1, torch.rand(40, 30) + 0.1
    ref = quantize_with_levels(w, "lat-approx", 2, d)
    for scheme in ("laq-linear", "laq-log"):
        alpha, b = quantize_with_levels(w, scheme, 2, d)
        assert torch.equal(b, ref[1]) and float(alpha) == pytest.approx(float(ref[0]), rel=1e-6)


# --- the rounding rules -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 7, 15, 127])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_rounding_is_nearest_level_in_log2(n, dtype):
    rng = np.random.default_rng(n)
    x = np.concatenate([
        rng.uniform(-1.5, 1.5, 4000), 2.0 ** rng.uniform(-n - 3, 1, 4000), [0.0, 1.0, 2.0**-n],
    ])
    # skip values within rounding distance of a boundary 2^(k - 1/2)
    frac = np.abs(np.log2(np.abs(x) + 1e-300) + 0.5 - np.round(np.log2(np.abs(x) + 1e-300) + 0.5))
    x = x[frac > 1e-6].astype(np.float64 if dtype == torch.float64 else np.float32)
    t = torch.from_numpy(x)
    got = Q._round_log(t, 1.0, n, torch.empty_like(t)).double().numpy()
    want = ref_round_log(x.astype(np.float64), n)
    if n == 127 and dtype == torch.float32:  # 2^-127 is subnormal: the zero threshold is 2^-126
        want = np.where(np.abs(x) < 2.0**-126, 0.0, want)
    np.testing.assert_array_equal(got, want)


def test_log_rounding_boundaries():
    x = torch.tensor([0.124, 0.125, 0.17, 0.35, 0.36, 0.70, 0.71, 1.0, 3.0, -0.3, 0.0])
    assert Q._round_log(x, 1.0, 3, torch.empty_like(x)).tolist() == [
        0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 1.0, 1.0, 1.0, -0.25, 0.0]
    # scaling: x is divided by alpha first
    assert Q._round_log(x * 4, 4.0, 3, torch.empty_like(x)).tolist()[:4] == [0.0, 0.25, 0.25, 0.25]


# --- closed forms -------------------------------------------------------------------------------


def test_bwn_closed_form_and_sign_of_zero():
    w = torch.tensor([[0.3, -0.2, 0.0], [-0.0, 1.5, -0.7]])
    alpha, b = quantize_with_levels(w, "bwn")
    assert float(alpha) == pytest.approx(float(w.abs().mean()), rel=1e-7)
    assert b.tolist() == [[1, -1, 1], [1, 1, -1]]
    assert torch.equal(quantize(w, "bwn"), alpha * b)


def test_twn_threshold_and_alpha():
    torch.manual_seed(2)
    w = torch.randn(500, dtype=torch.float64)
    delta = 0.7 * w.abs().mean()
    support = w.abs() > delta
    alpha, b = quantize_with_levels(w, "twn", 2)
    assert torch.equal(b, torch.sign(w) * support)
    assert float(alpha) == pytest.approx(float(w.abs()[support].mean()), rel=1e-12)
    # d is ignored by the curvature-blind schemes
    d = torch.rand(500, dtype=torch.float64)
    alpha_d, b_d = quantize_with_levels(w, "twn", 2, d)
    assert torch.equal(alpha_d, alpha) and torch.equal(b_d, b)


@pytest.mark.parametrize("shape", [(7,), (64, 33), (8, 3, 5, 5)])
def test_lab_with_constant_d_is_bwn_bitwise(shape):
    torch.manual_seed(3)
    w = torch.randn(shape)
    ref = quantize(w, "bwn")
    assert torch.equal(quantize(w, "lab"), ref)
    for c in (1.0, 0.25, 64.0):  # powers of two scale the sums exactly
        assert torch.equal(quantize(w, "lab", 1, torch.full(shape, c)), ref)
    assert torch.allclose(quantize(w, "lab", 1, torch.full(shape, 0.3)), ref, rtol=1e-6)


def test_lab_closed_form_weighs_by_curvature():
    w = torch.tensor([1.0, -3.0, 0.5], dtype=torch.float64)
    d = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    alpha, b = quantize_with_levels(w, "lab", 1, d)
    assert float(alpha) == pytest.approx((1 * 1 + 3 * 0.5) / 4)
    assert b.tolist() == [1, -1, 1]


@SETTINGS
@given(data=st.data())
def test_lat_exact_with_constant_d_is_the_exhaustive_optimum(data):
    w, _, _ = data.draw(problems(max_n=7))
    ones = torch.ones_like(w)
    best = exhaustive_optimum(w, ones, [-1.0, 0.0, 1.0])
    for d in (None, ones * 2.5):
        alpha, b = quantize_with_levels(w, "lat-exact", 2, d)
        assert objective(w, None, float(alpha), b) <= best * (1 + 1e-6) + 1e-12


def test_lat_exact_keeps_ties_together():
    w = torch.tensor([1.0, 0.5, 0.5, -0.5, 0.1])
    alpha, b = quantize_with_levels(w, "lat-exact", 2)
    # supports {1} -> 1, {1, three 0.5} -> 2.5^2/4 = 1.5625; splitting the tie is not allowed
    assert b.tolist() == [1, 1, 1, -1, 0] and float(alpha) == pytest.approx(0.625)


@pytest.mark.parametrize("case", ["uniform", "gauss", "outliers", "ties", "zeros-in-d",
                                  "heavy-tail", "few-values"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lat_exact_on_large_tensors_matches_a_full_sort(case, dtype):
    """The CPU path prunes the sort with bucket bounds; it must still find the optimum.

    In float64 the products d|w| are the reference's, so only a tie within rounding could
    change the choice: the tolerance is far below what a cut a bucket away would cost.
    """
    g = torch.Generator().manual_seed(4)
    n = 120_000
    w = torch.randn(n, generator=g) * 0.02
    d = torch.rand(n, generator=g) * 50 + 1
    if case == "uniform":
        w = (torch.rand(n, generator=g) * 2 - 1) * 0.04
    elif case == "outliers":
        w[:7] = 1.0
    elif case == "ties":
        w[: n // 3] = -0.03
    elif case == "zeros-in-d":
        d[torch.rand(n, generator=g) < 0.4] = 0
    elif case == "heavy-tail":
        w = torch.randn(n, generator=g).exp() * torch.randn(n, generator=g).sign()
        d = torch.rand(n, generator=g) ** 6
    elif case == "few-values":
        w = torch.randint(-3, 4, (n,), generator=g).float() * 0.01
    w, d = w.to(dtype), d.to(dtype)
    alpha, b = quantize_with_levels(w, "lat-exact", 2, d)
    got = objective(w, d, float(alpha), b)
    want = best_alpha_objective(w, d, ref_lat_exact(w, d))
    assert got == pytest.approx(want, rel=1e-12 if dtype == torch.float64 else 1e-7)
    assert got == pytest.approx(best_alpha_objective(w, d, b), rel=1e-12)
    assert in_level_set(b, "lat-exact", 2)


def test_lat_exact_pruning_is_exact_over_many_draws():
    """The optimum often lies strictly inside a bucket: a bound that ignored that would miss it."""
    g = torch.Generator().manual_seed(8)
    for _ in range(16):
        n = 40_000
        w = torch.randn(n, generator=g, dtype=torch.float64) * float(torch.rand(1, generator=g))
        d = torch.rand(n, generator=g, dtype=torch.float64) * 50 + 0.1
        alpha, b = quantize_with_levels(w, "lat-exact", 2, d)
        want = best_alpha_objective(w, d, ref_lat_exact(w, d))
        assert objective(w, d, float(alpha), b) == pytest.approx(want, rel=1e-12)


# --- edge cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_all_zero_weights_give_zero_without_nan(scheme, bits):
    for d in (None, torch.rand(4, 5), torch.zeros(4, 5)):
        alpha, b = quantize_with_levels(torch.zeros(4, 5), scheme, bits, d)
        assert float(alpha) == 0.0
        assert bool(torch.isfinite(b).all())
        expected = 1.0 if bits == 1 else 0.0  # sign(0) = +1 for the binary schemes
        assert bool((b == expected).all())
        assert not bool(quantize(torch.zeros(4, 5), scheme, bits, d).any())


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_all_zero_curvature_is_constant_curvature(scheme, bits):
    torch.manual_seed(5)
    w = torch.randn(6, 7)
    got = quantize_with_levels(w, scheme, bits, torch.zeros(6, 7))
    want = quantize_with_levels(w, scheme, bits)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_zeros_in_d_and_curvature_only_on_zero_weights(scheme, bits):
    w = torch.tensor([0.5, -0.2, 0.0, 0.9, -0.05])
    d = torch.tensor([1.0, 0.0, 2.0, 0.0, 3.0])
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    assert math.isfinite(float(alpha)) and float(alpha) >= 0 and bool(torch.isfinite(b).all())
    assert in_level_set(b, scheme, bits)
    # d positive only where w is 0: every quantization has objective 0
    alpha, b = quantize_with_levels(w, scheme, bits, torch.tensor([0.0, 0, 1, 0, 0]))
    assert math.isfinite(float(alpha)) and in_level_set(b, scheme, bits)


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
@pytest.mark.parametrize("value", [0.37, -2.0])
def test_single_element(scheme, bits, value):
    w = torch.tensor([value])
    for d in (None, torch.tensor([0.5])):
        w_hat = quantize(w, scheme, bits, d)
        assert w_hat.shape == (1,)
        assert float(w_hat) == pytest.approx(value, rel=1e-6)  # one weight is represented exactly


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_device_preserved_on_4d(scheme, bits, dtype):
    torch.manual_seed(6)
    w = torch.randn(4, 3, 3, 3).to(dtype)
    d = torch.rand(4, 3, 3, 3).to(dtype) + 0.1
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    assert alpha.shape == () and alpha.dtype == dtype and b.shape == w.shape and b.dtype == dtype
    w_hat = quantize(w, scheme, bits, d)
    assert w_hat.shape == w.shape and w_hat.dtype == dtype and w_hat.device == w.device
    assert torch.equal(w_hat, alpha * b)
    if dtype != torch.bfloat16:
        flat = quantize_with_levels(w.flatten(), scheme, bits, d.flatten())
        assert torch.equal(flat[1], b.flatten()) and torch.equal(flat[0], alpha)


@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_curvature_scale_and_memory_layout_do_not_matter(scheme, bits):
    torch.manual_seed(9)
    w, d = torch.randn(60, 50) * 0.1, torch.rand(60, 50) + 0.05
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    scaled = quantize_with_levels(w, scheme, bits, d * 8.0)
    assert torch.equal(scaled[0], alpha) and torch.equal(scaled[1], b)
    other = quantize_with_levels(w, scheme, bits, d * 3.7)
    assert torch.equal(other[1], b) and float(other[0]) == pytest.approx(float(alpha), rel=1e-5)
    w_input = quantize(w.clone(), scheme, bits, d)
    transposed = quantize_with_levels(w.t(), scheme, bits, d.t())  # not contiguous
    assert torch.equal(transposed[1], b.t()) and float(transposed[0]) == pytest.approx(float(alpha))
    assert torch.equal(w_input, alpha * b)


def test_inputs_are_not_modified():
    torch.manual_seed(10)
    w, d = torch.randn(40, 30), torch.rand(40, 30)
    init = quantize_with_levels(w, "laq-log", 3, d)[1]
    copies = [t.clone() for t in (w, d, init)]
    for scheme, bits in EVERY:
        quantize_with_levels(w, scheme, bits, d)
    quantize_with_levels(w, "laq-log", 3, d, init=init)
    quantize_with_levels(w, "laq-linear", 2, d, init=init.sign())
    assert all(torch.equal(t, c) for t, c in zip((w, d, init), copies, strict=True))


def test_parameters_with_grad_and_empty_tensors():
    p = torch.nn.Parameter(torch.randn(5, 4))
    w_hat = quantize(p, "lat-exact", 2, torch.rand(5, 4))
    assert not w_hat.requires_grad
    alpha, b = quantize_with_levels(torch.zeros(0, 3), "laq-linear", 3)
    assert float(alpha) == 0 and b.shape == (0, 3)


def test_bad_inputs_raise_user_errors():
    w = torch.randn(3, 4)
    with pytest.raises(UserError, match=r"d \(the curvature\) must be a tensor of the weight's shape"):
        quantize(w, "lab", 1, torch.ones(4, 3))
    with pytest.raises(UserError, match="init"):
        quantize_with_levels(w, "laq-linear", 3, init=torch.zeros(12))
    with pytest.raises(UserError, match="floating-point"):
        quantize(torch.ones(3, dtype=torch.int64), "bwn")


# --- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize(("scheme", "bits"), EVERY)
def test_cuda_matches_cpu(scheme, bits):
    """Same scheme on both devices: the CUDA path sorts everything where the CPU path prunes."""
    torch.manual_seed(7)
    for shape in ((64, 128), (300, 1000)):
        w, d = torch.randn(shape) * 0.05, torch.rand(shape) + 0.01
        alpha, b = quantize_with_levels(w, scheme, bits, d)
        alpha_c, b_c = quantize_with_levels(w.cuda(), scheme, bits, d.cuda())
        assert alpha_c.is_cuda and b_c.is_cuda and b_c.dtype == w.dtype and alpha_c.shape == ()
        assert in_level_set(b_c.cpu(), scheme, bits)
        mismatch = float((b_c.cpu() != b).float().mean())
        if (scheme, bits) in ITERATIVE:  # float sums may stop the alternation a round apart
            assert float(alpha_c) == pytest.approx(float(alpha), rel=1e-2)
            assert mismatch < 0.05
        else:  # reduction order only: a weight at the TWN threshold could flip
            assert float(alpha_c) == pytest.approx(float(alpha), rel=1e-5)
            assert mismatch <= 1e-4
        if scheme == "lat-exact":
            assert objective(w, d, float(alpha_c), b_c.cpu()) == pytest.approx(
                objective(w, d, float(alpha), b), rel=1e-6)
        again = quantize_with_levels(w.cuda(), scheme, bits, d.cuda(), init=b_c)
        assert again[1].is_cuda and bool(torch.isfinite(again[0]))
        assert torch.equal(quantize(torch.zeros(5, device="cuda"), scheme, bits).cpu(), torch.zeros(5))
