"""The windowed LAT exact solver of the compiled path (``benchmark.quant.fused_lat``) against the
sorted-prefix optimum: whenever it claims a result, it is the optimum (up to float rounding);
otherwise it reports a miss. The bin sums are computed here by the kernel's own function, run
eagerly (no compilation: these tests are fast), or by ``lat_bins.c``, the kernel the compiled
path uses on float32 weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.quant import fused_lat as L
from benchmark.quant import native
from benchmark.quant import quantizers as Q


def objective(w: torch.Tensor, d: torch.Tensor, alpha: float, b: torch.Tensor) -> float:
    w, d, b = w.double(), d.double(), b.double()
    return float((d * (w - alpha * b) ** 2).sum())


def optimum(w: torch.Tensor, d: torch.Tensor) -> float:
    """The best objective over every cut of the sorted magnitudes (ties kept together), float64."""
    a = np.abs(w.double().numpy())
    dd = d.double().numpy()
    order = np.argsort(-a, kind="stable")
    a, dd = a[order], dd[order]
    s1, s0 = np.cumsum(dd * a), np.cumsum(dd)
    closed = np.append(a[:-1] > a[1:], True) & (a > 0) & (s0 > 0)
    gain = np.where(closed, s1**2 / np.where(s0 > 0, s0, 1), 0)
    return float((dd * a * a).sum() - max(gain.max(), 0.0))


def native_lib():
    """``lat_bins.c`` built here (skips where there is no C compiler at all)."""
    lib, reason = native.lat_bins(L._EDGES, L._BELOW)
    if lib is None and native._compiler() is None:
        pytest.skip(reason)
    assert lib is not None, reason
    return lib


def windowed(w: torch.Tensor, d: torch.Tensor, center: float, delta: float,
             amax: float | None = None, mean: float | None = None, backend: str = "mask"):
    """(alpha, b) from the windowed solve, or None for a miss. ``backend``: the bin sums of the
    compiled kernel's own function run eagerly (``mask``), or ``lat_bins.c`` (``native``)."""
    win = L.Window()
    win.center, win.delta, win.amax, win.mean = center, delta, amax, mean
    if backend == "native":
        sums, (cand, dcand), error = win.bins(native_lib(), w, d)
        found = L.solve_window(win, sums, cand, dcand, error)
    else:
        mask = win.mask(w)
        sums = L._bin_sums(w.abs(), d, win.edge_tensor(w), mask[: w.numel()]).tolist()
        found = L.solve(win, sums, w, mask, lambda idx: d[idx])
    if found is None:
        return None
    alpha, threshold = found
    b = torch.copysign((w.abs() >= threshold).to(w.dtype), w)
    return alpha, b


def threshold_of(w: torch.Tensor, d: torch.Tensor) -> float:
    cand, dcand, a1, a0 = Q._prune(w.abs(), d)
    return float(Q._best_prefix(cand, dcand, a1, a0)[1])


def check(w, d, found, rel=1e-9):
    if found is None:
        return False
    alpha, b = found
    best = optimum(w, d)
    got = objective(w, d, alpha, b)
    assert got <= best + rel * abs(best) + 1e-300, (got, best)
    return True


@pytest.mark.parametrize(("dtype", "backend"), [(torch.float64, "mask"),
                                              (torch.float32, "mask"),
                                              (torch.float32, "native")])
def test_windowed_solve_is_the_optimum_or_a_miss(dtype, backend):
    """Random problems, windows centred near and far from the optimal threshold: every claimed
    result is optimal, and a window around the optimum is proved (the fast path is taken)."""
    g = torch.Generator().manual_seed(3)
    proved = 0
    for trial in range(40):
        n = int(torch.randint(200, 30_000, (1,), generator=g))
        if trial % 2:
            w = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.02
        else:
            w = torch.randn(n, generator=g, dtype=torch.float64) * 0.01
        d = torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.1
        w, d = w.to(dtype), d.to(dtype)
        t = threshold_of(w, d)
        amax, mean = float(w.abs().max()), float((w.abs() * d).sum() / d.sum())
        for off, delta in ((0.0, 0.01), (0.002, 0.01), (-0.004, 0.02), (0.3, 0.01), (-0.5, 0.05),
                           (2.0, 0.01)):
            proved += check(w, d, windowed(w, d, t * (1 + off), delta, amax, mean, backend),
                            1e-9 if dtype == torch.float64 else 1e-6)
    assert proved >= 40  # the windows around the optimum


@pytest.mark.parametrize("backend", ["mask", "native"])
def test_a_layer_whose_score_is_flat_far_above_the_threshold_is_proved(backend):
    """Gaussian weights with log-normal curvature: the best cut's score falls off slowly above
    the threshold, so the bins between the window and half the largest |w| must be narrow
    enough for their bounds to stay below the best (with three edges above, 4 of these 12
    windows were proved; a layer saved from a real MNIST run behaved alike, docs/choices.md)."""
    g = torch.Generator().manual_seed(0)
    n = 1 << 18
    w = torch.randn(n, generator=g) * 0.04
    d = torch.exp(torch.randn(n, generator=g)) * 1e-4
    t = threshold_of(w, d)
    amax = 0.99 * float(w.abs().max())  # the last step's largest |w|, a little lower
    proved = sum(check(w, d, windowed(w, d, t * (1 + off), delta, amax, backend=backend), 1e-6)
                 for off in (0.0, 0.001, -0.002, 0.003) for delta in (0.007, 0.01, 0.02))
    assert proved >= 10


def test_a_far_jump_is_a_miss_not_a_wrong_answer():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(20_000, generator=g, dtype=torch.float64) * 0.01
    d = torch.rand(20_000, generator=g, dtype=torch.float64) + 0.5
    t = threshold_of(w, d)
    for factor in (0.2, 0.6, 1.5, 4.0):  # the optimum lies outside the window
        assert windowed(w, d, t * factor, 0.01) is None


def test_two_separated_optima_are_not_confused():
    """A bimodal |w| whose best cut is far from a good local one: the window around the local
    one must not claim it."""
    w = torch.cat([torch.full((500,), 1.0), torch.linspace(0.30, 0.34, 4000),
                   torch.linspace(0.001, 0.01, 3000)]).double()
    d = torch.ones_like(w)
    t = threshold_of(w, d)
    for center in (0.32, 0.5, 0.9, t):
        found = windowed(w, d, center, 0.02)
        if center != t:
            assert found is None or check(w, d, found)
        else:
            check(w, d, found)


def test_ties_zeros_and_degenerate_inputs():
    # ties across the window's edges stay together
    w = torch.tensor([0.5] * 300 + [0.2] * 700 + [0.1] * 200 + [0.0] * 100, dtype=torch.float64)
    d = torch.ones_like(w)
    t = threshold_of(w, d)
    for center in (t, t * 1.001, t * 0.999, 0.35):
        found = windowed(w, d, center, 0.01)
        assert found is None or check(w, d, found)
    # zeros in d, and curvature only on some weights
    g = torch.Generator().manual_seed(6)
    w = torch.randn(5000, generator=g, dtype=torch.float64) * 0.01
    d = torch.rand(5000, generator=g, dtype=torch.float64)
    d[torch.rand(5000, generator=g) < 0.5] = 0
    t = threshold_of(w, d)
    assert check(w, d, windowed(w, d, t, 0.02, float(w.abs().max())))
    # all zeros, zero curvature everywhere: a miss (the eager fallback gives alpha 0)
    z = torch.zeros(1000, dtype=torch.float64)
    assert windowed(z, torch.ones_like(z), 0.01, 0.01) is None
    assert windowed(w, torch.zeros_like(w), t, 0.01) is None
    # a size that is not a multiple of 8 (the mask's padding)
    w7, d7 = w[:4999], (d[:4999] + 0.1)
    t7 = threshold_of(w7, d7)
    found = windowed(w7, d7, t7, 0.05, float(w7.abs().max()))
    assert found is None or check(w7, d7, found)


@pytest.fixture
def threads(request, monkeypatch):
    """Run with ``request.param`` threads, layers cut into pieces of at least 512 values."""
    before = torch.get_num_threads()
    monkeypatch.setattr(L, "_PIECE", 512)
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 3], indirect=True)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 511, 512, 513, 5000, 100_003])
def test_native_bin_sums_are_within_their_bound_and_the_window_values_exact(n, threads):
    """``lat_bins.c`` against float64 sums of the same float32 terms: every bin within the
    bound the proof allows for, the maxima exact, and the window's values and their d exactly
    those of the mask path, in index order (sizes around its vector and chunk lengths; with
    three threads, a layer of 1536 values or more is summed in pieces)."""
    g = torch.Generator().manual_seed(n)
    w = torch.randn(n, generator=g) * 0.02
    d = torch.exp(torch.randn(n, generator=g))  # curvature over orders of magnitude
    d[:: 7] = 0.0
    win = L.Window()
    win.center, win.delta = max(float(w.abs().median()), 1e-3), 0.05
    sums, (cand, dcand), error = win.bins(native_lib(), w, d)
    edges = torch.tensor(win.edges_used)  # float32, as the kernel compared
    a = w.abs()
    k = (a.unsqueeze(1) >= edges).sum(1)  # the bin of every value
    ref = []
    for j in range(L._EDGES + 1):
        if j == L._BELOW + 1:
            continue
        sel = k == j
        ref += [float((d * a)[sel].double().sum()), float(d[sel].double().sum())]
    ref += [float(a.max()), float(d.max())]
    assert len(sums) == len(ref)
    for got, want in zip(sums[:-2], ref[:-2], strict=True):
        assert abs(got - want) <= error * want + 1e-300, (got, want)
    assert sums[-2:] == ref[-2:]
    inside = k == L._BELOW + 1
    assert torch.equal(cand, a[inside]) and torch.equal(dcand, d[inside])
    assert error < 1e-5  # tight enough for the proofs (3e-5 lost none in a real run)


@pytest.mark.parametrize("threads", [1, 3], indirect=True)
def test_native_window_values_beyond_the_buffer_are_summed_again(threads):
    """A window holding more values than the kept buffer: the buffer grows and the pass runs
    again, so no value is lost."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(20_000, generator=g)
    d = torch.rand(20_000, generator=g) + 0.1
    win = L.Window()
    win.center, win.delta = 0.7, L._MAX_DELTA
    win._cand = (torch.empty(3), torch.empty(3))
    _, (cand, dcand), _ = win.bins(native_lib(), w, d)
    lo, hi = win.edges_used[L._BELOW], win.edges_used[L._BELOW + 1]
    inside = (w.abs() >= lo) & (w.abs() < hi)
    assert cand.numel() == int(inside.sum()) > 3
    assert torch.equal(cand, w.abs()[inside]) and torch.equal(dcand, d[inside])


def test_native_step_on_extreme_values_updates_as_the_compiled_update():
    """Zeros, subnormals, weights at and past +-1, huge and non-finite gradients: m, v and w as
    ``fused.update_fn`` leaves them (NaN where it has NaN), in the vector loop and the tail."""
    from benchmark.quant import fused

    n = 1037
    g0 = torch.Generator().manual_seed(9)
    special = torch.tensor([0.0, -0.0, 1e-45, -1e-40, 1.0, -1.0, 1e20, 3e38, float("inf"),
                            -float("inf"), float("nan")])
    g = special[torch.randint(0, len(special), (n,), generator=g0)] * (torch.rand(n, generator=g0) < 0.3)
    g += torch.randn(n, generator=g0) * 1e-3
    m = torch.randn(n, generator=g0) * 1e-4
    v = torch.rand(n, generator=g0) * 1e-6
    v[::5] = 0.0
    w = torch.randn(n, generator=g0) * 0.5
    w[::7] = torch.tensor(1.0).nextafter(torch.tensor(2.0))
    w[1::7] = -1.0
    step, eps = torch.tensor(-0.05), torch.tensor(1e-8)
    ref = [t.clone() for t in (g, m, v, w)]
    fused.update_fn()(*ref, torch.empty(n), 0.9, 0.999, step, eps)
    win = L.Window()
    win.center, win.delta = 0.3, 0.02
    win.step(native_lib(), g, m, v, w, 0.9, 0.999, step, eps)
    for got, want in zip((m, v, w), ref[1:], strict=True):
        assert torch.equal(got.isnan(), want.isnan())
        keep = ~want.isnan()
        assert torch.equal(got[keep], want[keep])


def test_native_miss_writes_the_curvature_the_compiled_update_writes():
    """After a windowed miss the eager method gets D = sqrt(v) + eps as ``fused.update_fn``
    writes it (correctly rounded), whichever path the step took."""
    from benchmark.quant import fused

    n = 50_000
    g0 = torch.Generator().manual_seed(10)
    args = [torch.randn(n, generator=g0) * 1e-3, torch.randn(n, generator=g0) * 1e-4,
            torch.rand(n, generator=g0) * 1e-6, torch.randn(n, generator=g0) * 0.02]
    step, eps = torch.tensor(-1e-3), torch.tensor(1e-8)
    ref = [t.clone() for t in args]
    d_ref = torch.empty(n)
    fused.update_fn()(*ref, d_ref, 0.9, 0.999, step, eps)
    native_lib()
    win = L.Window()
    win.center, win.delta, win.last = 5.0, 0.01, 5.0  # far above any |w|: a miss
    d, b, q = torch.empty(n), torch.empty(n), torch.empty(n)
    L.laq_step(win, *args, d, b, q, 0.9, 0.999, step, eps)
    assert win.misses == 1 and win.hits == 0
    assert torch.equal(d, d_ref) and torch.equal(args[3], ref[3])


@pytest.mark.parametrize("threads", [1, 3], indirect=True)
def test_native_step_updates_as_the_compiled_update_and_sums_the_new_weights(threads):
    """``lat_step``: m, v and w bit for bit as ``fused.update_fn`` leaves them (the same
    arithmetic), D = sqrt(v) + eps correctly rounded (numpy's float32, as inductor's; torch's
    eager sqrt is 1 ulp off on a fifth of these values), and the sums and window values those
    of ``lat_bins`` over the new w and that D (the largest sizes overflow the kept buffer, so
    the sums are taken again by ``lat_bins_v``)."""
    from benchmark.quant import fused

    g0 = torch.Generator().manual_seed(4)
    lib = native_lib()
    for n in (5, 1000, 4099, 300_001):
        g = torch.randn(n, generator=g0) * 1e-3
        m = torch.randn(n, generator=g0) * 1e-4
        v = torch.rand(n, generator=g0) * 1e-6
        w = torch.randn(n, generator=g0) * 0.3
        w[:3] = torch.tensor([0.99999, -0.99999, 1.0])  # some clipped
        step, eps = torch.tensor(-0.05), torch.tensor(1e-8)
        ref = [t.clone() for t in (g, m, v, w)]
        fused.update_fn()(*ref, torch.empty(n), 0.9, 0.999, step, eps)
        win = L.Window()
        win.center, win.delta = float(w.abs().median()), 0.02
        sums, (cand, dcand), error = win.step(lib, g, m, v, w, 0.9, 0.999, step, eps)
        for got, want in zip((m, v, w), ref[1:], strict=True):
            assert torch.equal(got, want)
        assert all(t._version > 0 for t in (m, v, w))  # the writes are seen (BLAQ's freshness)
        d = torch.from_numpy(np.sqrt(v.numpy()) + np.float32(1e-8))
        again = L.Window()
        again.center, again.delta = win.center, win.delta
        sums2, (cand2, dcand2), error2 = again.bins(lib, w, d)
        assert sums2 == sums and error2 == error
        assert torch.equal(cand2, cand) and torch.equal(dcand2, dcand)


def test_native_window_values_are_float32_under_a_float64_default(monkeypatch):
    """The kept buffers hold what lat_bins.c writes (float32) whatever torch's default dtype:
    under float64 the window's values once came back as garbage and a wrong cut was claimed."""
    g = torch.Generator().manual_seed(8)
    w = torch.randn(50_000, generator=g) * 0.02
    d = torch.rand(50_000, generator=g) + 0.1
    t = threshold_of(w, d)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        found = windowed(w, d, t, 0.01, float(w.abs().max()), backend="native")
    finally:
        torch.set_default_dtype(before)
    assert check(w, d, found, 1e-6)


def test_native_sums_past_float32_range_are_a_miss():
    """A run of huge curvatures overflows a float32 lane: a miss (the eager method), no error."""
    w = torch.cat([torch.full((4096,), 0.9), torch.full((4096,), 0.5)])
    d = torch.full((8192,), 1e37)
    assert windowed(w, d, 0.5, 0.01, backend="native") is None


def test_native_build_recovers_from_what_it_finds(monkeypatch, tmp_path):
    """A cached file that is no library is built again and loaded; ``$CC`` may carry words; a
    missing source is a reason, not an exception."""
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("BLAQ_NATIVE_CACHE", str(first))
    native.lat_bins.cache_clear()
    try:
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        if lib is None and native._compiler() is None:
            pytest.skip(reason)
        (built,) = first.glob("lat_bins-*.so")  # its name, in a cache not yet loaded from
        second.mkdir()
        (second / built.name).write_bytes(b"not a library")
        monkeypatch.setenv("BLAQ_NATIVE_CACHE", str(second))
        native.lat_bins.cache_clear()
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        assert lib is not None, reason
        assert [p.name for p in second.iterdir()] == [built.name]  # put back in place
        assert (second / built.name).read_bytes() != b"not a library"
        native.lat_bins.cache_clear()
        monkeypatch.setenv("CC", "env " + native._compiler()[0])
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        assert lib is not None, reason
        native.lat_bins.cache_clear()
        monkeypatch.setenv("CC", 'gcc "-O2')  # unbalanced quotes: no such compiler, cc instead
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        assert lib is not None, reason
        native.lat_bins.cache_clear()
        monkeypatch.setattr(native, "_SOURCE", tmp_path / "missing.c")
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        assert lib is None and "no kernel source" in reason
    finally:
        native.lat_bins.cache_clear()


def test_native_build_reports_why_it_cannot(monkeypatch, tmp_path):
    """No usable compiler, or BLAQ_NATIVE=0: no library and a reason (fused_lat then sums with
    inductor), never an exception."""
    monkeypatch.setenv("BLAQ_NATIVE_CACHE", str(tmp_path))
    native.lat_bins.cache_clear()
    native.zigzag.cache_clear()
    try:
        monkeypatch.setenv("CC", "false")  # a "compiler" that fails
        lib, reason = native.lat_bins(L._EDGES, L._BELOW)
        assert lib is None and "could not build lat_bins.c" in reason
        lib, reason = native.zigzag()  # the meter's kernel: the same builder
        assert lib is None and "could not build zigzag.c" in reason
        assert not list(tmp_path.iterdir())  # nothing half-written left behind
        native.lat_bins.cache_clear()
        monkeypatch.setenv("BLAQ_NATIVE", "0")
        assert native.lat_bins(L._EDGES, L._BELOW) == (None, "BLAQ_NATIVE=0")
    finally:
        native.lat_bins.cache_clear()
        native.zigzag.cache_clear()


def test_window_recentres_and_adapts():
    win = L.Window()
    win.record(0.01, hit=False)  # the first solve: no prediction yet, no widening
    assert win.center == pytest.approx(0.01) and win.delta == L._START_DELTA
    win.record(0.0101, hit=True)  # moved 1%: the next prediction extrapolates the move
    assert win.center == pytest.approx(0.0101 * 1.01)
    assert win.delta == pytest.approx(max(4 * 0.01, 0.8 * L._START_DELTA))
    before = win.delta
    win.record(0.02, hit=False)  # a miss widens
    assert win.delta == pytest.approx(min(2 * before, L._MAX_DELTA)) and win.misses == 1
    edges = win.edges()
    assert edges == sorted(edges) and len(edges) == L._EDGES and edges[0] > 0
    win.record(float("inf"), hit=False)  # nothing to centre on
    assert win.center is None


def test_misses_in_a_row_back_off_and_a_hit_resets():
    """Where the proof keeps failing, solves skip the window for 4, 8, ... (at most 64) solves
    instead of paying its pass on top of the eager method every time."""
    from benchmark.quant.fused_lat import _MAX_SKIP, Window

    win = Window()
    assert not win.attempt()  # no prediction yet
    win.record(0.5, hit=False)  # the first solve sets the prediction: not a miss
    assert win.misses == 0 and win.attempt()
    win.record(0.5, hit=False)  # one miss: try again at once
    assert win.misses == 1 and win.attempt()
    win.record(0.5, hit=False)  # two in a row: skip 4 solves
    tries = [win.attempt() for _ in range(5)]
    assert tries == [False] * 4 + [True]
    win.record(0.5, hit=False, tried=False)  # a skipped solve is neither a miss nor a hit
    assert win.misses == 2 and win.streak == 2
    for _ in range(10):  # a long streak: the skip is capped
        win.record(0.5, hit=False)
    assert win.skip == _MAX_SKIP
    win.skip = 0
    win.record(0.5, hit=True)
    assert win.streak == 0 and win.attempt()
