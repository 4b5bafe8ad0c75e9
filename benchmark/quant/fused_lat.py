"""LAT exact under ``compile=True`` on the CPU: a window around the last threshold, proved optimal.

The optimal ternary support is a threshold on |w| (``quantizers``' sorted-prefix method), and
from step to step the optimal threshold moves little (about 0.5% here). Per layer a ``Window``
keeps a prediction ``c`` of the next threshold (the last one, extrapolated by its last move) and
a relative half-width ``delta``; one step is then

1. per-bin sums of d|w| and d over a few fixed bins of |w| around ``c`` (edges
   ``c (1 - delta g^k)`` below, ``c (1 + delta g^k)`` above, plus everything below and
   everything above), the largest |w| and d, and the values inside the window
   ``[c (1 - delta), c (1 + delta))``: on float32 weights by ``lat_bins.c`` (``native``), which
   also hands back the window's values and their D (in the LAQ step, ``lat_step`` does the Adam
   update in the same pass; BLAQ's stages read w and D after their compiled pass); else in the
   update's compiled pass (separate masked float64 reductions, which inductor fuses into one
   loop, three times the update's time), with a byte mask of the window;
2. on the host: the window's candidates (a few thousand; from the mask, gathered eight bytes at
   a time), sorted, and the best cut among them, with the sums of the bins above added: exactly
   the sorted-prefix method restricted to cuts inside the window;
3. a proof that no cut outside the window scores higher: for a cut inside an outer bin, the
   score S1^2 / S0 is a convex function of the part of the bin taken, and that part lies in a
   triangle fixed by the bin's sums and edges (it takes the bin's largest values first), so the
   triangle's corners bound it (``_bin_bound``; the bucket bound of ``quantizers._prune``,
   tightened by the bin's own S1). Monotone bounds cover the rest: above the threshold a bin
   whose every value is at least half the mean of the values above it cannot beat its lower
   edge (adding a value of at least half the current alpha never lowers the score; the top
   edge is placed at half the last max |w| for this), and below it a bin whose values all lie
   below about half the mean that includes them cannot beat its upper edge (the lowest edge
   is placed at half the last mean |w|);
4. a second compiled pass writes the levels and ``w_hat = alpha b``.

When the proof fails (the threshold jumped, the first step, a near-tie with a distant cut), the
step falls back to the eager exact method (``quantizers._prune`` over the whole tensor) and the
window is recentred and widened; the width then adapts to the observed moves. The proof allows
for the rounding of the bin sums (``_error``: inductor sums every bin in float64, and the bound
holds for any order of summation; ``_native_error``: ``lat_bins.c`` adds 64 terms per lane in
float32, then in double), so a rounding error costs a fallback, never a wrong cut. The result is
the exact optimum, the eager path's up to the summation order (alpha within float rounding; a
cut between two near-equal scores may be the neighbouring one).

Reading the sums and candidates on the host, this is the CPU path; the sync-free mode (a GPU)
keeps the eager quantizer after the compiled update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from benchmark.quant import fused, native
from benchmark.quant.quantizers import _FLOAT_LAYOUT, Workspace, _best_prefix, _prune

_BELOW = 2  # outer edges below the window
_ABOVE = 4  # ... and above it (with 3, Gaussian-like layers of a real MNIST run missed a
# quarter of their proofs at the wide bin below 0.51 max |w|: docs/choices.md)
_EDGES = _BELOW + 2 + _ABOVE
_GROWTH = 6.0  # each outer edge is this many times further from c than the previous one
_MIN_DELTA, _MAX_DELTA, _START_DELTA = 0.007, 0.08, 0.01
_PRODUCT_ERROR = 2.0**-22  # twice float32's unit: a rounded term d|w| against its exact value
_MAX_SKIP = 64  # after misses in a row, solves skip the window (2, 4, ... up to this many)


def _error(n: int) -> float:
    """A bound on the relative error of a float64 sum of ``n`` terms >= 0, whatever the order of
    summation (a chain of n - 1 additions, each off by at most half a unit in the last place; 64
    more for the few sums of sums on the host): it holds for any kernel the compiler writes, so
    the proof does not rest on its loop order."""
    return 1.01 * (n + 64) * 2.0**-53


def _native_error(n: int, chunk: int, lanes: int) -> float:
    """The same bound for ``lat_bins.c``'s sums: each lane adds chunk / lanes terms in float32
    (one unit of float32 per addition), the lanes and chunks then go to double."""
    return 1.01 * ((chunk // lanes - 1) * 2.0**-24 + (lanes + n // chunk + 64) * 2.0**-53)


_PIECE = 1 << 19  # the least piece of a layer that a thread of its own sums (``Window.bins``)


def _native():
    """``lat_bins.c`` built for this module's bin layout, or None (``native.lat_bins``)."""
    return native.lat_bins(_EDGES, _BELOW)[0]


# --- the compiled passes ---------------------------------------------------------------------


def _bin_sums(a: Tensor, d: Tensor, edges: Tensor, mask: Tensor) -> Tensor:
    """(c1, c0) of every outer bin, bottom to top, then max |w| and max d (float64); the window's
    mask into ``mask``. Every bin accumulates in float64, so ``_error`` bounds its rounding."""
    da = d * a
    ge = [a >= edges[k] for k in range(_EDGES)]  # each comparison once
    mask.copy_(torch.where(ge[_BELOW] & ~ge[_BELOW + 1], 1, 0).to(torch.uint8))
    out = []
    for j in range(_EDGES + 1):
        if j == _BELOW + 1:  # the window: its candidates are summed on the host
            continue
        if j == 0:
            sel = ~ge[0]
        elif j == _EDGES:
            sel = ge[_EDGES - 1]
        else:
            sel = ge[j - 1] & ~ge[j]
        out.append(torch.where(sel, da, 0.0).sum(dtype=torch.float64))
        out.append(torch.where(sel, d, 0.0).sum(dtype=torch.float64))
    out.append(a.amax().double())
    out.append(d.amax().double())
    return torch.stack(out)


def _step(g, m, v, w, edges, mask, beta1, beta2, step_size, eps_c):
    """The Adam update (m, v, w in place) and the bin sums of the new w with D = sqrt(v) + eps_c."""
    w_new, d_new = fused._update(g, m, v, w, None, beta1, beta2, step_size, eps_c)
    return _bin_sums(w_new.abs(), d_new, edges, mask)


def _sums(w, d, edges, mask):
    return _bin_sums(w.abs(), d, edges, mask)


def _trial_sums(g, m, v, w, d, trial, edges, mask, beta1, beta2, step_size, eps_c):
    """BLAQ's forward stage (``fused._trial``) and the bin sums of the trial weight."""
    fused._trial(g, m, v, w, d, trial, beta1, beta2, step_size, eps_c)
    return _bin_sums(trial.abs(), d, edges, mask)


def _backtrack_sums(blended: bool) -> Callable:
    backtrack = fused._backtrack(blended)

    def backtrack_sums(m, v, g, d, w, beta1, beta2, a, w_blend, w_d, eps_next, step, edges,
                       mask):
        """BLAQ's backtrack stage (``fused._backtrack``) and the bin sums of the new w, D."""
        backtrack(m, v, g, d, w, beta1, beta2, a, w_blend, w_d, eps_next, step)
        return _bin_sums(w.abs(), d, edges, mask)
    return backtrack_sums


def _write(w: Tensor, threshold: Tensor, alpha: Tensor, b_out: Tensor, p: Tensor) -> None:
    """b = sign(w) where |w| >= threshold, else 0 (signed as w, as the eager path writes it);
    w_hat = alpha b."""
    b = torch.copysign(torch.where(w.abs() >= threshold, 1.0, 0.0), w).to(w.dtype)
    b_out.copy_(b)
    p.copy_(b * alpha)


# The bin sums' pass has 2 * (_EDGES + 1) - 2 reductions besides the maxima and the mask:
# above inductor's default cap of 16 nodes fused side by side in one CPU loop, the mask and the
# maxima went to loops of their own, each reading |w| again (the LAQ step of a 4M-weight layer:
# 18.4 ms in 4 loops, 16.8 ms in 2 with the cap raised; the sums are the same bit for bit, each
# accumulating in the same order either way).
_OPTIONS = {"cpp.max_horizontal_fusion_size": 64}


@functools.cache
def step_fn() -> Callable:
    return fused.compile_variant(_step, options=_OPTIONS)


@functools.cache
def sums_fn() -> Callable:
    return fused.compile_variant(_sums, options=_OPTIONS)


@functools.cache
def trial_sums_fn() -> Callable:
    return fused.compile_variant(_trial_sums, options=_OPTIONS)


@functools.cache
def backtrack_sums_fn(blended: bool) -> Callable:
    return fused.compile_variant(_backtrack_sums(blended), blended, options=_OPTIONS)


@functools.cache
def write_fn() -> Callable:
    return fused.compile_variant(_write)


# --- the host side -------------------------------------------------------------------------


class Window:
    """Per layer: the predicted threshold, the window's width and the kept buffers."""

    def __init__(self) -> None:
        self.center: float | None = None  # the predicted threshold (None: no prediction yet)
        self.last: float | None = None  # the last threshold found
        self.delta = _START_DELTA
        self.amax: float | None = None  # the last max |w| and mean |w| (weighted by d)
        self.mean: float | None = None
        self.ws = Workspace()  # the fallback's scratch
        self.edges_used: list[float] = []
        self.hits = 0  # windowed solves proved optimal
        self.misses = 0  # ... and fallbacks after a prediction
        self.streak = 0  # misses in a row
        self.skip = 0  # solves left that go straight to the eager method (after a streak)
        self.skipped = False  # a fused BLAQ stage skipped: its quantize does too
        self._mask: Tensor | None = None
        self._cand: tuple[Tensor, Tensor] | None = None  # lat_bins.c's window values and d
        self._sums: Tensor | None = None
        self._scalars: dict[tuple, Tensor] = {}
        # what a fused BLAQ stage computed for the next quantize: (w, its version, the sums,
        # the window's values and their d or None (then the mask holds them), the error bound)
        self.pending: tuple[Tensor, int, list[float], tuple[Tensor, Tensor] | None,
                            float] | None = None

    # what a checkpoint keeps: the prediction and its history (a resumed run then tries the
    # same windows, so it sums in the same order as the uninterrupted run)
    KEPT = ("center", "last", "delta", "amax", "mean", "hits", "misses", "streak", "skip")

    def state(self) -> dict[str, float | int | None]:
        return {name: getattr(self, name) for name in self.KEPT}

    def load(self, state: dict[str, float | int | None]) -> None:
        for name in self.KEPT:
            if name in state:
                setattr(self, name, state[name])

    def mask(self, w: Tensor) -> Tensor:
        """The kept byte mask: w's size padded with zeros to a multiple of 8."""
        size = -(-w.numel() // 8) * 8
        if self._mask is None or self._mask.numel() != size:
            self._mask = torch.zeros(size, dtype=torch.uint8, device=w.device)
        return self._mask

    def bins(self, lib, w: Tensor, d: Tensor) -> tuple[list[float], tuple[Tensor, Tensor], float]:
        """``lat_bins.c`` over the flat float32 w and d at this window's edges: the bin sums,
        the window's values and their d, and the sums' error bound. With several threads
        (``torch.get_num_threads()``) a large layer is cut into pieces summed at once (the C
        call lets the interpreter go) and added in order, so a run sums alike with the same
        thread count."""
        edges = self.edge_tensor(w).data_ptr()

        def call(start: int, size: int, *out: int) -> int:
            return lib.lat_bins(w[start:].data_ptr(), d[start:].data_ptr(), size, edges, *out)

        found = self._native(lib, w.numel(), call)
        assert found is not None  # summing again fits every value
        return found

    def step(self, lib, g: Tensor, m: Tensor, v: Tensor, w: Tensor, beta1: float, beta2: float,
             step: Tensor, eps_c: Tensor
             ) -> tuple[list[float], tuple[Tensor, Tensor], float]:
        """The LAQ step by ``lat_step`` (``lat_bins.c``): the Adam update of m, v and w in
        place (``fused._update``'s arithmetic; D is not stored), and ``bins`` of the new w and
        D in the same read. A window too full for the kept buffer: the sums are taken again
        from w and v (``lat_bins_v``, D computed alike)."""
        edges = self.edge_tensor(w).data_ptr()
        scalars = (1.0 - beta1, beta2, 1.0 - beta2, float(step), float(eps_c))

        def call(start: int, size: int, *out: int) -> int:
            return lib.lat_step(g[start:].data_ptr(), m[start:].data_ptr(), v[start:].data_ptr(),
                                w[start:].data_ptr(), size, *scalars, edges, *out)

        def again(start: int, size: int, *out: int) -> int:
            return lib.lat_bins_v(w[start:].data_ptr(), v[start:].data_ptr(), size, scalars[-1],
                                  edges, *out)

        found = self._native(lib, w.numel(), call, once=True)
        for t in (m, v, w):  # written through pointers: mark them changed, as torch's writes do
            native.written(t)
        if found is None:
            found = self._native(lib, w.numel(), again)
        assert found is not None  # summing again fits every value
        return found

    def _native(self, lib, n: int, call: Callable[..., int], once: bool = False
                ) -> tuple[list[float], tuple[Tensor, Tensor], float] | None:
        """Runs ``call(start, size, sums, cand, dcand, cap)`` (pointers) over the layer's
        pieces and gathers the results; a window too full for the buffer grows it and runs
        again, or with ``once`` (the pass updates w) returns None."""
        chunk = lib.lat_bins_chunk()
        pieces = max(1, min(torch.get_num_threads(), n // _PIECE))
        bounds = [n * i // pieces // chunk * chunk for i in range(pieces)] + [n]
        if self._sums is None or self._sums.shape[0] != pieces:
            self._sums = torch.empty(pieces, 2 * _EDGES + 2, dtype=torch.float64)
        if self._cand is None:
            size = max(min(n, 4096), n // 64)  # a window holds about 0.5% of the values
            f32 = torch.float32  # what lat_bins.c writes, whatever torch's default
            self._cand = (torch.empty(size, dtype=f32), torch.empty(size, dtype=f32))
        while True:
            cand, dcand = self._cand
            cap = cand.numel() // pieces

            def run(i: int, cand: Tensor = cand, dcand: Tensor = dcand, cap: int = cap) -> int:
                at = i * cap
                return call(bounds[i], bounds[i + 1] - bounds[i], self._sums[i].data_ptr(),
                            cand[at:].data_ptr(), dcand[at:].data_ptr(), cap)

            counts = [run(0)] if pieces == 1 else list(native.pool(pieces).map(run, range(pieces)))
            if max(counts) <= cap:
                break
            grown = 2 * pieces * max(counts)
            self._cand = (torch.empty(grown, dtype=torch.float32),
                          torch.empty(grown, dtype=torch.float32))
            if once:
                return None
        if pieces == 1:
            sums = self._sums[0].tolist()
            found = (cand[: counts[0]], dcand[: counts[0]])
        else:
            parts = self._sums.tolist()
            sums = [sum(part[k] for part in parts) for k in range(2 * _EDGES)]
            sums += [max(part[-2] for part in parts), max(part[-1] for part in parts)]
            found = tuple(torch.cat([t[i * cap: i * cap + c] for i, c in enumerate(counts)])
                          for t in (cand, dcand))
        error = _native_error(n, chunk, lib.lat_bins_lanes()) + pieces * 2.0**-52
        return sums, found, error

    def scalar(self, name: str, value: float, like: Tensor) -> Tensor:
        key = (name, like.dtype, like.device)
        t = self._scalars.get(key)
        if t is None:
            t = self._scalars[key] = torch.empty((), dtype=like.dtype, device=like.device)
        return t.fill_(value)

    def edge_tensor(self, like: Tensor) -> Tensor:
        """The edges of ``edges()`` in w's dtype (kept in ``edges_used`` as rounded there)."""
        t = self._scalars.get(("edges", like.dtype, like.device))
        if t is None:
            t = self._scalars[("edges", like.dtype, like.device)] = torch.empty(
                _EDGES, dtype=like.dtype, device=like.device)
        t.copy_(torch.tensor(self.edges(), dtype=torch.float64))
        self.edges_used = t.tolist()
        return t

    def edges(self) -> list[float]:
        """The bin edges, ascending: geometric in the distance from ``c``; the lowest at most
        half the last mean |w| and the highest at least half the last max |w| (the bins beyond
        are then covered by the monotone bounds of ``solve``)."""
        c, dl = self.center, self.delta
        below = [c * max(1.0 - dl * _GROWTH**k, 0.5**k * 0.1) for k in range(_BELOW, 0, -1)]
        above = [c * (1.0 + dl * _GROWTH**k) for k in range(1, _ABOVE + 1)]
        if self.mean is not None:
            below[0] = min(below[0], 0.49 * self.mean)
        if self.amax is not None:
            above[-1] = max(above[-1], 0.51 * self.amax)
        return [*below, c * (1.0 - dl), c * (1.0 + dl), *above]

    def attempt(self) -> bool:
        """Whether this solve tries the window: not without a prediction, nor while backing off
        after misses in a row (where the proof keeps failing, as on weights whose score is flat
        far around its best, a try costs its pass on top of the eager method's)."""
        if self.center is None:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    def record(self, threshold: float, hit: bool, tried: bool = True) -> None:
        """Recentre on ``threshold`` (extrapolated by its last move) and adapt the width;
        ``tried``: the window was tried (a solve that skipped it changes neither width nor
        counts)."""
        if not math.isfinite(threshold) or threshold <= 0:
            self.center = self.last = None
            return
        if hit:
            self.hits += 1
            self.streak = 0
            miss = abs(threshold / self.center - 1.0)
            self.delta = min(max(4.0 * miss, 0.8 * self.delta, _MIN_DELTA), _MAX_DELTA)
        elif self.center is not None and tried:  # a miss (not the first solve): widen
            self.misses += 1
            self.streak += 1
            self.delta = min(2.0 * self.delta, _MAX_DELTA)
            if self.streak >= 2:  # back off: skip 4, 8, ... solves before the next try
                self.skip = min(2**self.streak, _MAX_SKIP)
        move = 1.0 if self.last is None else threshold / self.last
        self.last = threshold
        self.center = threshold * min(max(move, 0.9), 1.1)


def _score(s1: float, s0: float) -> float:
    return s1 * s1 / s0 if s0 > 0 else 0.0


def _bin_bound(u1: float, u0: float, c1: float, c0: float, bot: float, top: float,
               skip_top: bool, skip_bottom: bool) -> float:
    """The largest score of a cut inside a bin [bot, top) with sums (c1, c0), below values with
    sums (u1, u0). The part taken, (x, y) = (its sum d|w|, its sum d), lies in the triangle with
    corners (0, 0) (the cut at top), (c1, c0) (the cut at bot) and the meeting point of
    x <= top y and x <= c1 - bot (c0 - y) (it takes the largest values first); the score is
    convex in (x, y), so a corner bounds it. ``skip_*``: a corner that is a cut at the window's
    edge (scored exactly there)."""
    corners = []
    if not skip_top:
        corners.append(_score(u1, u0))
    if not skip_bottom:
        corners.append(_score(u1 + c1, u0 + c0))
    if top > bot:
        y = min(max((c1 - bot * c0) / (top - bot), 0.0), c0)
        corners.append(_score(u1 + top * y, u0 + y))
    return max(corners, default=0.0)


def _window_best(cand: Tensor, dcand: Tensor, above1: float, above0: float,
                 r1: float, r0: float) -> tuple[float, float, float, int, Tensor]:
    """The best cut among the window's candidates (and the cut above them all): returns
    (s1, s0, score in units r1, r0, k, the sorted candidates), k the number of candidates in
    the support."""
    f64 = torch.float64
    # descending by value: ascending by the negated bit pattern (monotone in a value >= 0;
    # an integer sort is faster than a float one here)
    int_type = _FLOAT_LAYOUT[cand.dtype][0]
    keys, order = torch.sort(torch.neg(cand.view(int_type)))
    v = keys.neg_().view(cand.dtype)
    dv = torch.index_select(dcand, 0, order)
    count = v.numel()
    s1 = torch.empty(count + 1, dtype=f64)
    s0 = torch.empty(count + 1, dtype=f64)
    s1[0], s0[0] = above1, above0
    torch.cumsum(v * dv, 0, dtype=f64, out=s1[1:]).add_(above1)
    torch.cumsum(dv, 0, dtype=f64, out=s0[1:]).add_(above0)
    closed = torch.ones(count + 1, dtype=torch.bool)
    if count:
        torch.gt(v[:-1], v[1:], out=closed[1:-1])
        closed[count] = bool(v[-1] > 0)
    closed &= s0 > 0
    x1, x0 = s1 / r1, s0 / r0
    score = torch.where(closed, x1 * x1 / torch.where(closed, x0, 1.0), -1.0)
    k = int(torch.argmax(score))  # the first (shortest) of equal scores
    return float(s1[k]), float(s0[k]), float(score[k]), k, v


def _candidates(mask: Tensor, n: int) -> Tensor:
    """The indices where the byte mask (padded with zeros to a multiple of 8) is set, read eight
    bytes at a time (most words are zero)."""
    words = mask.view(torch.int64)
    hot = torch.nonzero(words).flatten()
    block = torch.index_select(mask.view(-1, 8), 0, hot)
    pos = (hot.unsqueeze(1) * 8 + torch.arange(8)).flatten()
    return torch.masked_select(pos, block.flatten().bool())


def solve(win: Window, sums: list[float], a: Tensor, mask: Tensor,
          cand_d: Callable[[Tensor], Tensor]) -> tuple[float, float] | None:
    """The windowed exact solve from the compiled pass's ``sums`` and the window's ``mask``;
    ``a`` the flat |w| (or w: only magnitudes are read), ``cand_d(idx)`` the curvature at the
    candidates. Returns (alpha, threshold), or None when the window's best is not proved optimal
    (the caller falls back and the window is widened)."""
    idx = _candidates(mask, a.numel())
    cand = torch.index_select(a, 0, idx).abs_()  # index_select: 4x faster than a[idx] here
    return solve_window(win, sums, cand, cand_d(idx), _error(a.numel()))


def solve_window(win: Window, sums: list[float], cand: Tensor, dcand: Tensor,
                 g: float) -> tuple[float, float] | None:
    """``solve`` from the window's values ``cand`` (magnitudes) and their curvature ``dcand``,
    ``g`` the relative error bound of the bin sums."""
    if not all(map(math.isfinite, sums)):  # an inf or NaN value, or a sum past float32's range
        return None
    edges = win.edges_used
    amax, dmax = sums[-2], sums[-1]
    win.amax = amax
    c = [(sums[2 * i], sums[2 * i + 1]) for i in range(_EDGES)]
    below, above = c[: _BELOW + 1], c[_BELOW + 1:]  # bottom to top
    total1 = sum(x for x, _ in c)
    total0 = sum(y for _, y in c)
    w1, w0 = float(torch.dot(cand.double(), dcand.double())), float(dcand.double().sum())
    r1, r0 = total1 + w1, total0 + w0
    if not (r1 > 0 and r0 > 0):
        return None
    win.mean = r1 / r0
    a1, a0 = sum(x for x, _ in above), sum(y for _, y in above)
    s1b, s0b, best, k, v = _window_best(cand, dcand, a1, a0, r1, r0)
    if best <= 0:
        return None
    alpha_b = (s1b / r1) / (s0b / r0)  # in units r1 / r0
    err = [(g * x / r1, g * y / r0) for x, y in c]
    window_err = (g * w1 / r1, g * w0 / r0)  # the window's own sums (its dot and cumsums)

    def beaten(bound: float, near: list, far: list, u1: float, u0: float, c1: float,
               c0: float, bot: float, top: float) -> bool:
        """Whether the bin's bound may reach the best once the rounding of the sums is allowed
        for. The score x^2 / y moves by 2 alpha dx - alpha^2 dy: the sums from the window out
        to the bin (``near``) enter the bound and the best differently, those further out
        (``far``) alike, so only the difference of the two alphas counts for them (the alphas of
        the cuts in the bin lie between those at its edges, at most max |w|)."""
        n1, n0 = sum(x for x, _ in near), sum(y for _, y in near)
        f1, f0 = sum(x for x, _ in far), sum(y for _, y in far)
        # the alphas x / y at the triangle's corners (see _bin_bound)
        ends = [(u1 + c1) / (u0 + c0)]
        if u0 > 0:
            ends.append(u1 / u0)
        if top > bot:
            y = min(max((c1 - bot * c0) / (top - bot), 0.0), c0)
            if u0 + y > 0:
                ends.append((u1 + top * y) / (u0 + y))
        spread = max(abs(x - alpha_b) for x in ends)
        reach = max(*ends, alpha_b)
        tol = 2 * (2 * reach * n1 + reach * reach * n0)  # in the bound and in the best
        tol += spread * (2 * f1 + 2 * reach * f0)
        # a term d|w| is rounded to w's precision before it is summed, which may move a value
        # across a bin's edge by about that much: allow for it relative to the best; and tol
        # is first order in g: the score's exact remainder adds at most 4 g^2 of it
        return bound + tol + (1e-12 + _PRODUCT_ERROR + 4 * g * g) * best >= best

    # above the window, top down: (u1, u0) the sums of the bins above this one
    ups = [*edges[_BELOW + 1:], max(amax, edges[-1])]
    base = _BELOW + 1  # index of the first bin above the window in c
    u1 = u0 = 0.0
    for j in range(len(above) - 1, -1, -1):
        c1, c0 = above[j][0] / r1, above[j][1] / r0
        bot, top = ups[j] * r0 / r1, ups[j + 1] * r0 / r1
        if c0 > 0:
            bound = _bin_bound(u1, u0, c1, c0, bot, top, False, j == 0)
            mean = u1 / u0 if u0 > 0 else top
            if 2 * bot >= max(mean, top):  # every value >= alpha/2: no cut beats the bottom
                bound = min(bound, -1.0 if j == 0 else _score(u1 + c1, u0 + c0))
            if beaten(bound, [*err[base: base + j + 1], window_err], err[base + j + 1:], u1, u0,
                      c1, c0, bot, top):
                return None
        u1, u0 = u1 + c1, u0 + c0
    # below the window, top down: everything above the bin is in the support
    downs = [0.0, *edges[: _BELOW + 1]]
    u1, u0 = (a1 + w1) / r1, (a0 + w0) / r0
    for j in range(len(below) - 1, -1, -1):
        c1, c0 = below[j][0] / r1, below[j][1] / r0
        bot, top = downs[j] * r0 / r1, downs[j + 1] * r0 / r1
        if c0 > 0:
            bound = _bin_bound(u1, u0, c1, c0, bot, top, j == len(below) - 1, False)
            low = (u1 + c1) / (u0 + c0)  # the mean only falls as values below it join
            if top <= low and 2 * low * top + top * top * (dmax / r0) / u0 <= low * low:
                # no value of the bin raises the score as it joins: none beats the top
                bound = min(bound, -1.0 if j == len(below) - 1 else _score(u1, u0))
            if beaten(bound, [*err[j:_BELOW + 1], window_err], err[base:], u1, u0, c1, c0, bot,
                      top):
                return None
        u1, u0 = u1 + c1, u0 + c0
    threshold = edges[_BELOW + 1] if k == 0 else float(v[k - 1])
    return s1b / s0b, threshold


# --- the drivers -----------------------------------------------------------------------------


def _fallback(win: Window, w: Tensor, d: Tensor, b_out: Tensor, p: Tensor,
              tried: bool = True) -> Tensor:
    """The eager exact method over the whole tensor (quantizers._lat_exact's CPU path), the
    levels written by the compiled pass; recentres the window (``tried``: after a failed try)."""
    ws = win.ws
    a = torch.abs(w, out=ws.buffer("abs", w))
    total0 = float(d.sum(dtype=torch.float64))
    win.amax = float(a.amax())
    win.mean = float(torch.dot(a, d)) / total0 if total0 > 0 else None
    cand, dcand, above1, above0 = _prune(a, d, ws)
    if cand.numel() == 0:
        alpha, threshold = 0.0, math.inf
    else:
        whole = cand.numel() == a.numel()
        best_alpha, thr = _best_prefix(cand, dcand, above1, above0, ws if whole else None)
        alpha, threshold = float(best_alpha), float(thr)
    win.record(threshold, hit=False, tried=tried)
    return _finish(win, w, alpha, threshold, b_out, p)


def _finish(win: Window, w: Tensor, alpha: float, threshold: float, b_out: Tensor,
            p: Tensor) -> Tensor:
    alpha_t = torch.full((), alpha, dtype=w.dtype, device=w.device)  # fresh: the meter keeps the last
    write_fn()(w, win.scalar("threshold", threshold, w), alpha_t, b_out, p)
    return alpha_t


def _native_for(*tensors: Tensor):
    """``lat_bins.c`` where it applies: float32 tensors (flat, contiguous, on the CPU)."""
    if any(t.dtype != torch.float32 for t in tensors):
        return None
    return _native()


def usable(*tensors: Tensor) -> bool:
    """Whether the windowed path applies: CPU tensors with flat views."""
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def laq_step(win: Window, g: Tensor, m: Tensor, v: Tensor, w: Tensor, d: Tensor, b_out: Tensor,
             p: Tensor, beta1: float, beta2: float, step: Tensor, eps_c: Tensor) -> Tensor:
    """The LAQ step of one layer with LAT exact: the update fused with the bin sums, the windowed
    solve (or the fallback, which writes D into ``d``), the levels into ``b_out`` and
    ``alpha b`` into ``p``; returns alpha (0-dim). Every tensor contiguous, on the CPU."""
    g, m, v, w, d, b_out, p = (t.view(-1) for t in (g, m, v, w, d, b_out, p))
    if not win.attempt():
        fused.update_fn()(g, m, v, w, d, beta1, beta2, step, eps_c)
        return _fallback(win, w, d, b_out, p, tried=False)
    lib = _native_for(w, d, g, m, v)
    if lib is not None:  # the update and the sums in one pass of lat_bins.c
        win.pending = None
        sums, (cand, dcand), error = win.step(lib, g, m, v, w, beta1, beta2, step, eps_c)
        found = solve_window(win, sums, cand, dcand, error)
        if found is None:  # D as the step computed it (and as the compiled update writes it)
            lib.lat_curvature(v.data_ptr(), v.numel(), float(eps_c), d.data_ptr())
            native.written(d)
            return _fallback(win, w, d, b_out, p)
        win.record(found[1], hit=True)
        return _finish(win, w, *found, b_out, p)
    mask = win.mask(w)
    sums = step_fn()(g, m, v, w, win.edge_tensor(w), mask[: w.numel()], beta1, beta2, step,
                     eps_c).tolist()
    found = solve(win, sums, w, mask,
                  lambda idx: torch.index_select(v, 0, idx).sqrt_().add_(eps_c))
    if found is None:
        torch.sqrt(v, out=d).add_(eps_c)
        return _fallback(win, w, d, b_out, p)
    win.record(found[1], hit=True)
    return _finish(win, w, *found, b_out, p)


def trial(win: Window, g: Tensor, m: Tensor, v: Tensor, w: Tensor, d: Tensor, trial: Tensor,
          beta1: float, beta2: float, step: Tensor, eps_c: Tensor) -> None:
    """BLAQ's forward stage (``fused.trial_fn``), with the bin sums of the trial weight in the
    same pass (kept for the ``quantize`` of ``trial`` that follows)."""
    args = tuple(t.view(-1) for t in (g, m, v, w, d, trial))
    if not win.attempt():
        fused.trial_fn()(*args, beta1, beta2, step, eps_c)
        win.skipped = win.center is not None
        return
    flat_trial = args[5]
    lib = _native_for(flat_trial, args[4])
    if lib is not None:
        fused.trial_fn()(*args, beta1, beta2, step, eps_c)
        win.pending = (trial, trial._version, *win.bins(lib, flat_trial, args[4]))
        return
    sums = trial_sums_fn()(*args, win.edge_tensor(flat_trial), win.mask(flat_trial)[: w.numel()],
                           beta1, beta2, step, eps_c)
    win.pending = (trial, trial._version, sums.tolist(), None, _error(w.numel()))


def backtrack(win: Window, blended: bool, m: Tensor, v: Tensor, g: Tensor, d: Tensor, w: Tensor,
              *scalars: object) -> None:
    """BLAQ's backtrack stage (``fused.backtrack_fn``), with the bin sums of the new w in the
    same pass (kept for the ``quantize`` of w that follows)."""
    args = tuple(t.view(-1) for t in (m, v, g, d, w))
    if not win.attempt():
        fused.backtrack_fn(blended)(*args, *scalars)
        win.skipped = win.center is not None
        return
    flat_w = args[4]
    lib = _native_for(flat_w, args[3])
    if lib is not None:
        fused.backtrack_fn(blended)(*args, *scalars)
        win.pending = (w, w._version, *win.bins(lib, flat_w, args[3]))
        return
    sums = backtrack_sums_fn(blended)(*args, *scalars, win.edge_tensor(flat_w),
                                      win.mask(flat_w)[: w.numel()])
    win.pending = (w, w._version, sums.tolist(), None, _error(w.numel()))


def quantize(win: Window, w: Tensor, d: Tensor, b_out: Tensor, p: Tensor) -> Tensor:
    """LAT exact of ``w`` with curvature ``d`` (BLAQ's trial point and backtrack): the bin sums
    (those of a fused stage just run for this w, or a pass of their own), the windowed solve or
    the fallback, the levels into ``b_out`` and ``alpha b`` into ``p``."""
    pending, win.pending = win.pending, None
    skipped, win.skipped = win.skipped, False
    fresh = pending is not None and pending[0] is w and pending[1] == w._version
    if skipped or (not fresh and not win.attempt()):
        return _fallback(win, *(t.view(-1) for t in (w, d, b_out, p)), tried=False)
    w, d, b_out, p = (t.view(-1) for t in (w, d, b_out, p))
    if fresh:
        _, _, sums, cand, error = pending
    elif (lib := _native_for(w, d)) is not None:
        sums, cand, error = win.bins(lib, w, d)
    else:
        sums = sums_fn()(w, d, win.edge_tensor(w), win.mask(w)[: w.numel()]).tolist()
        cand, error = None, _error(w.numel())
    if cand is None:  # the window's values from the mask the compiled pass wrote
        idx = _candidates(win.mask(w), w.numel())
        cand = (torch.index_select(w, 0, idx).abs_(), torch.index_select(d, 0, idx))
    found = solve_window(win, sums, *cand, error)
    if found is None:
        return _fallback(win, w, d, b_out, p)
    win.record(found[1], hit=True)
    return _finish(win, w, *found, b_out, p)
