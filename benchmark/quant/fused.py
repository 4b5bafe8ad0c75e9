"""The opt-in compiled fast path (``compile=True``): the LAQ step and the quantizers as fused kernels.

``torch.compile`` (inductor: C++/OpenMP on the CPU, Triton on a GPU) turns each function below
into a few loops over the weights: the Adam update of a layer, its clipping and the sums a
closed-form quantizer needs are one pass; writing the levels and ``w_hat`` is another; one round
of the alternation is one pass that only reads the weights (the levels of a round are a
projection of w at the round's scale, so only the scale is kept, and the levels are written
once, at the end). Eager PyTorch takes 5-12 passes for the same work. LAT exact has its own
module, ``benchmark.quant.fused_lat`` (bin sums around the last threshold: by the library's one
hand-written kernel ``lat_bins.c``, in the LAQ step's pass with the update, or else by inductor
fused with the update here; a windowed exact solve on the host; the levels in a second pass);
in sync-free mode (a GPU) it runs ``update_fn`` and then its eager quantizer.

The arithmetic is the eager path's, but a fused loop sums in another order, so alpha differs in
the last bits (about 1e-6 relative on a million weights) and a weight on a rounding boundary may
take the neighbouring level: the results are equal to the eager path's within float rounding,
not bit for bit (tests/quant/test_compiled.py states the tolerance). The default path is eager.

Compiling costs seconds per function and weight shape (2-20 s here); inductor keeps the compiled
kernels in its on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_$USER``), so a later process with the same shapes loads them in well under a
second. Where ``torch.compile`` cannot work (no C++ compiler on the CPU, say), ``available()``
says why and the optimizers refuse the option with that reason.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import shutil
import types
from collections.abc import Callable

import torch
from torch import Tensor

from benchmark.quant.quantizers import _FLOAT_LAYOUT

_ALPHA_RTOL = 1e-6  # as in quantizers: the alternation stops when alpha moves by less
CLOSED_FORM = ("bwn", "lab", "twn")
BINARY = ("bwn", "lab")  # their fused kernels write every level as -1 or +1 (``_signs``)
ITERATIVE = ("lat-approx", "laq-linear", "laq-log")


def available(device: torch.device | str = "cpu") -> str | None:
    """None when ``torch.compile`` can build kernels for ``device``, else the reason it cannot."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    kind = torch.device(device).type
    if kind == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile needs a C++ compiler (g++) for CPU kernels, and none is on the PATH"
    if kind == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile needs triton for GPU kernels, and it is not installed"
    return None


def compile_variant(fn: Callable, *variant: object,
                    options: dict[str, object] | None = None) -> Callable:
    """``torch.compile(fn)`` for one variant of a function made by a factory: under a code object
    of its own, since dynamo counts its recompilations (at most 8) per code object, and the
    variants (scheme, level count, ...) would otherwise share one. ``options``: inductor
    settings for this function alone."""
    code = fn.__code__.replace(co_name="_".join(map(str, (fn.__name__, *variant))))
    fresh = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    return torch.compile(fresh, fullgraph=True, options=options)


def flat(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """The tensors as 1-D views when all are contiguous (every kernel here is elementwise with
    whole-tensor sums, so it needs no shape: one compiled kernel serves every layer, and dynamo
    compiles each function at most twice, static then dynamic in size); else as they are."""
    if all(t is None or t.is_contiguous() for t in tensors):
        return tuple(None if t is None else t.view(-1) for t in tensors)
    return tensors


# --- the Adam update of a quantized layer --------------------------------------------------


def _lerp(a: Tensor, b: Tensor, weight: float) -> Tensor:
    """a + weight (b - a): torch.lerp's formula for weights below 1/2, written out (the weight
    may be a 0-dim tensor: the scalars that change every step are passed as tensors)."""
    return a + weight * (b - a)


def _update(g: Tensor, m: Tensor, v: Tensor, w: Tensor, d: Tensor | None,
            beta1: float, beta2: float, step: float, eps_c: float) -> tuple[Tensor, Tensor]:
    """m, v, w (and D = sqrt(v) + eps_c, unless d is None) in place; returns the new w and D
    (LossAwareAdam's math)."""
    m_new = _lerp(m, g, 1 - beta1)
    v_new = v * beta2 + g * g * (1 - beta2)
    d_new = torch.sqrt(v_new) + eps_c
    w_new = torch.clamp(w + step * (m_new / d_new), -1.0, 1.0)
    m.copy_(m_new)
    v.copy_(v_new)
    if d is not None:
        d.copy_(d_new)
    w.copy_(w_new)
    return w_new, d_new


def _signs(w: Tensor) -> Tensor:
    """sign(w) with sign(0) = sign(-0.0) = +1."""
    return torch.where(w < 0, -1.0, 1.0).to(w.dtype)


def _closed(scheme: str, w: Tensor, d: Tensor | None) -> tuple[Tensor, Tensor]:
    """(alpha, b) of bwn, lab or twn (quantizers' formulas)."""
    a = w.abs()
    if scheme == "bwn":
        return a.mean(), _signs(w)
    if scheme == "lab":
        if d is None:
            return a.mean(), _signs(w)
        return (a * d).sum() / d.sum(), _signs(w)
    support = (a > 0.7 * a.mean()).to(w.dtype)
    count = support.sum()
    alpha = torch.where(count > 0, (a * support).sum() / count, 0.0)
    return alpha, torch.copysign(support, w)


def _closed_step(scheme: str, has_d: bool) -> Callable:
    """bwn and lab: the update and alpha's sums in one pass (w_hat is written by ``_write_signs``:
    in one graph, inductor would recompute the update in the writing pass instead of reading w);
    twn (two dependent sums): the update and the quantizer in one graph."""
    def step(g, m, v, w, d, b_out, p, beta1, beta2, step_size, eps_c):
        w_new, d_new = _update(g, m, v, w, None, beta1, beta2, step_size, eps_c)
        alpha, b = _closed(scheme, w_new, d_new if has_d else None)
        if scheme == "twn":
            b_out.copy_(b)
            p.copy_(b * alpha)
        return alpha
    return step


def _write_signs(w: Tensor, alpha: Tensor, b_out: Tensor, p: Tensor) -> None:
    b = _signs(w)
    b_out.copy_(b)
    p.copy_(b * alpha)


def _closed_quantize(scheme: str, has_d: bool) -> Callable:
    def quantize(w, d, b_out, p):
        alpha, b = _closed(scheme, w, d if has_d else None)
        b_out.copy_(b)
        p.copy_(b * alpha)
        return alpha
    return quantize


def _trial(g: Tensor, m: Tensor, v: Tensor, w: Tensor, d: Tensor, trial: Tensor,
           beta1: float, beta2: float, step: float, eps_c: float) -> None:
    """BLAQ's forward stage (moment blend): m, v and D in place, the trial weight into ``trial``."""
    m_new = _lerp(m, g, 1 - beta1)
    v_new = v * beta2 + g * g * (1 - beta2)
    d_new = torch.sqrt(v_new) + eps_c
    m.copy_(m_new)
    v.copy_(v_new)
    d.copy_(d_new)
    trial.copy_(torch.clamp(w + step * (m_new / d_new), -1.0, 1.0))


def _backtrack(blended: bool) -> Callable:
    def backtrack(m, v, g, d, w, beta1, beta2, a, w_blend, w_d, eps_next, step):
        """BLAQ's backtrack stage (moment blend; optim.BLAQ._backtrack_moment's math): D_comb
        into d, w in place, and with ``blended`` the blended moments into m, v."""
        v2 = v * beta2 + g * g * (1 - beta2)
        blend = _lerp(m, g, w_blend)
        d_comb = _lerp(d, torch.sqrt(v2) + eps_next, w_d)
        if blended:
            m_new = _lerp(m, g, (1 - beta1) * (1 - a))
            v_new = _lerp(v, v2, 1 - a)
            m.copy_(m_new)
            v.copy_(v_new)
        d.copy_(d_comb)
        w.copy_(torch.clamp(w + step * (blend / d_comb), -1.0, 1.0))
    return backtrack


@functools.cache
def trial_fn() -> Callable:
    """The compiled ``_trial``."""
    return compile_variant(_trial)


@functools.cache
def backtrack_fn(blended: bool) -> Callable:
    """The compiled ``_backtrack``."""
    return compile_variant(_backtrack(blended), blended)


@functools.cache
def update_fn() -> Callable:
    """The compiled ``_update`` (for the schemes whose quantizer stays eager: lat-exact when
    sync-free or off the windowed path, schemes registered without a fused kernel)."""
    return compile_variant(_update)


@functools.cache
def closed_step_fn(scheme: str, has_d: bool) -> Callable:
    """The compiled LAQ step of a closed-form scheme: update and alpha (and for twn b and w_hat;
    for bwn and lab call ``write_signs_fn`` next)."""
    return compile_variant(_closed_step(scheme, has_d), scheme, has_d)


@functools.cache
def write_signs_fn() -> Callable:
    """The compiled ``_write_signs``: b = sign(w), w_hat = alpha b."""
    return compile_variant(_write_signs)


@functools.cache
def closed_quantize_fn(scheme: str, has_d: bool) -> Callable:
    """The compiled closed-form quantizer alone (BLAQ's trial point and backtrack)."""
    return compile_variant(_closed_quantize(scheme, has_d), scheme, has_d)


# --- the alternation (lat-approx, laq-linear, laq-log) ---------------------------------------
#
# quantizers._alternate_on_device's rule, with the levels of every round kept as the scale that
# projected them: the state is (scale, num, den, used, cold, active) as float64 0-dim tensors
# (used: the scale whose projection are the current levels; cold: no round accepted yet, the
# levels are the start's); nothing weight-sized is written until the end.


def _project(w: Tensor, scale: Tensor, n: int, log: bool) -> Tensor:
    """quantizers._round_linear / _round_log, in level units."""
    if not log:
        return torch.clamp(w * (1.0 / scale).to(w.dtype), -n, n).round()
    # on the float bit pattern, as quantizers._round_log: the exponent field is floor(log2)
    int_type, mantissa, bias = _FLOAT_LAYOUT[w.dtype]
    x = (w * (1.0 / scale).to(w.dtype)).abs()
    e = (x * math.sqrt(2.0)).view(int_type) >> mantissa
    level = (e.clamp(bias - (n - 1), bias) << mantissa).view(w.dtype)
    return torch.copysign(torch.where(x >= 2.0 ** -n, level, 0.0), w)


def _init_levels(init: Tensor, n: int, log: bool) -> Tensor:
    if not log:
        return torch.clamp(init * n, -n, n).round()
    return _project(init, torch.ones((), dtype=torch.float64, device=init.device), n, log)


def _fit(w: Tensor, d: Tensor | None, u: Tensor) -> tuple[Tensor, Tensor]:
    f64 = torch.float64
    du = u if d is None else d * u
    return (du * w).sum(dtype=f64), (du * u).sum(dtype=f64)


def _start(n: int, log: bool, has_d: bool, fused_update: bool) -> Callable:
    """The warm start's sums and the cold start's scale (after the update when fused)."""
    unit = 1 if log else n

    def start(g, m, v, w, d, init, beta1, beta2, step_size, eps_c):
        if fused_update:
            w, d = _update(g, m, v, w, d if has_d else None, beta1, beta2, step_size, eps_c)
        dd = d if has_d else None
        num, den = _fit(w, dd, _init_levels(init, n, log))
        mean = w.abs().sum(dtype=torch.float64) / w.numel()
        warm = (num > 0) & (den > 0)
        scale0 = torch.where(mean > 0, 4 * n / (2 * n + 1) * mean / unit, 1.0)
        return (torch.where(warm, num / den, scale0), torch.where(warm, num, 0.0),
                torch.where(warm, den, 0.0), warm, mean > 0)
    return start


def _round(n: int, log: bool, has_d: bool, cold: bool) -> Callable:
    """One round: project at ``scale``, keep the levels if they lower the objective. ``cold``:
    the round that replaces a useless warm start by the rounding at the cold scale."""

    def one(w, d, scale, num, den, used, moved, active):
        u = _project(w, scale, n, log)
        num_v, den_v = _fit(w, d if has_d else None, u)
        ratio = num_v / torch.where(num > 0, num, 1.0)
        ok = (num_v > 0) & (den_v > 0)
        if cold:  # the start's levels have no use: take the cold ones if they have one
            accept = active & ok
        else:
            accept = active & ok & (ratio * ratio > den_v / torch.where(den > 0, den, 1.0))
        new_scale = num_v / torch.where(den_v > 0, den_v, 1.0)
        still = accept if cold else accept & ((new_scale - scale).abs() > _ALPHA_RTOL * scale)
        return (torch.where(accept, new_scale, scale), torch.where(accept, num_v, num),
                torch.where(accept, den_v, den), torch.where(accept, scale, used),
                moved | accept, still)
    return one


def _finish(n: int, log: bool) -> Callable:
    unit = 1 if log else n

    def finish(w, init, used, moved, ok, scale, b_out, p):
        u = torch.where(moved, _project(w, used, n, log), _init_levels(init, n, log))
        b = torch.where(ok, u / unit, 0.0).to(w.dtype)
        alpha = torch.where(ok, scale * unit, 0.0).to(w.dtype)
        b_out.copy_(b)
        p.copy_(b * alpha)
        return alpha
    return finish


@functools.cache
def start_fn(n: int, log: bool, has_d: bool, fused_update: bool) -> Callable:
    return compile_variant(_start(n, log, has_d, fused_update), n, log, has_d, fused_update)


@functools.cache
def round_fn(n: int, log: bool, has_d: bool, cold: bool) -> Callable:
    return compile_variant(_round(n, log, has_d, cold), n, log, has_d, cold)


@functools.cache
def finish_fn(n: int, log: bool) -> Callable:
    return compile_variant(_finish(n, log), n, log)


def alternate(
    scheme: str, bits: int, w: Tensor, d: Tensor | None, init: Tensor, b_out: Tensor, p: Tensor,
    rounds: int, sync_free: bool, update: tuple | None = None,
) -> Tensor:
    """The iterative schemes: (optionally the fused update, then) the warm start from ``init``,
    at most ``rounds`` rounds or alpha change below 1e-6, the levels written to ``b_out`` and
    ``alpha * b`` to ``p``; returns alpha. ``update`` = (g, m, v, beta1, beta2, step, eps_c)
    fuses the Adam update into the first pass (d is then written there). ``sync_free``: run
    every round (frozen on the device once stopped) instead of reading the stop on the host."""
    log = scheme == "laq-log"
    n = 2 ** (bits - 1) - 1
    has_d = d is not None
    if update is None:
        w, d, init, b_out, p = flat(w, d, init, b_out, p)
    else:
        w, d, init, b_out, p, *grads = flat(w, d, init, b_out, p, update[0], update[1], update[2])
        update = (*grads, *update[3:])
    if update is None:
        args = (w, w, w, w, d if has_d else w, init, 0.0, 0.0, 0.0, 0.0)
    else:
        g, m, v, beta1, beta2, step, eps_c = update
        args = (g, m, v, w, d, init, beta1, beta2, step, eps_c)
    scale, num, den, warm, has_mean = start_fn(n, log, has_d, update is not None)(*args)
    dd = d if has_d else w
    moved = torch.zeros((), dtype=torch.bool, device=w.device)
    used = scale
    if sync_free or not bool(warm):
        cold = round_fn(n, log, has_d, True)
        scale, num, den, used, moved, _ = cold(w, dd, scale, num, den, used, moved, ~warm & has_mean)
    ok = warm | moved
    active = ok
    step_round = round_fn(n, log, has_d, False)
    for _ in range(rounds):
        if not sync_free and not bool(active):
            break
        scale, num, den, used, moved, active = step_round(w, dd, scale, num, den, used, moved, active)
    return finish_fn(n, log)(w, init, used, moved, ok, scale, b_out, p)
