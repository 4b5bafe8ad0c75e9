"""Weight quantizers w -> w_hat = alpha * b: the curvature-blind (BWN, TWN) and loss-aware (LAB, LAQ) schemes.

Each scheme solves, for one tensor, min over alpha > 0 and b in its level set of
sum_i d_i (w_i - alpha b_i)^2, with d the diagonal curvature (``None`` means constant).

- ``lab`` and ``lat-exact`` are exact. LAT exact is the sorted-prefix method; on the CPU the sort
  is restricted, by bucket bounds on the prefix scores, to the few values near the optimal
  threshold, which keeps it exact and makes it about ten times cheaper than a full sort. (The
  optimizers' opt-in ``compile=True`` path on the CPU goes further, in
  ``benchmark.quant.fused_lat``: it sorts only a window around the last step's threshold and
  proves with bounds of the same kind that no cut outside it is better, else it falls back to
  this method.)
- ``lat-approx``, ``laq-linear`` and ``laq-log`` alternate alpha = sum(d w b) / sum(d b^2) and
  b = round(w / alpha) from the warm start ``init`` (the previous b), at most 10 rounds or until
  alpha moves by less than 1e-6 (relative); a round is kept only if it lowers the objective, so
  the result is never worse than its start, and a converged result is a fixed point (passing it
  back as ``init`` returns it unchanged). Without ``init`` (or with one that has no positive
  correlation with w) the start is the rounding at the curvature-blind scale
  alpha0 = 4n / (2n + 1) * mean |w|: the optimal linear scale for uniformly distributed weights
  (Glorot-uniform initialization); at 2 bits its threshold 2/3 mean |w| is close to TWN's 0.7.
- Linear rounding: round(clip(w / alpha, -1, 1) * n) / n, ties to even. Log rounding: the
  nearest level in log2 of the magnitude (2^k wins on [2^(k-1/2), 2^(k+1/2))), and 0 below half
  the smallest level (|w / alpha| < 2^-n, as in ternary rounding); see ``_round_log``.
  At 2 bits both are ternary, and ``laq-linear``/``laq-log`` then give ``lat-approx``'s result.

Speed (see ``Workspace`` and ``Scheme.solve_into``): the optimizers call the solvers in a
workspace kept per layer (no weight-sized allocation after the first call) and, off the CPU,
sync-free (no host read of a device value; the alternation runs every round and freezes a
stopped result on the device). Neither changes a result; an optional round cap does.

Conventions shared by all schemes (they are the documented answers to degenerate inputs):

- one alpha per tensor, returned as a 0-dim tensor of w's dtype on w's device;
- the sign of 0 (and of -0.0) is +1 for the binary schemes;
- a ``d`` with no positive entry carries no curvature and is treated as constant (``d=None``);
- when no weight with positive curvature is non-zero (an all-zero tensor, say), every choice has
  the same objective: alpha is 0 and b is sign(w) (binary) or 0 (the other schemes), so
  w_hat = 0 and nothing is NaN; an empty tensor gives alpha 0;
- float16/bfloat16 weights are quantized in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.errors import UserError
from benchmark.registry import Registry

Solver = Callable[[Tensor, "Tensor | None", int, "Tensor | None"], "tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class Scheme:
    """A quantizer: its level set per bit width and the solver that picks alpha and b.

    ``solve(w, d, bits, init)`` returns ``(alpha, b)`` and never writes to its inputs. It expects
    what ``quantize_with_levels`` hands it (a caller that skips that front door, like the
    optimizer, must do the same): a float32 or float64 tensor w with at least one element and no
    grad, d of w's shape and dtype with a positive entry (or None for constant), init of w's
    shape holding levels of this scheme (or None). Scaling d by a positive factor leaves the
    result unchanged (up to float rounding; exactly for a power of two).
    ``positive_levels(bits)`` lists the non-negative levels (the set is symmetric about 0);
    ``steps(bits)`` is n, the level spacing in units of alpha / n (used by the zig-zag metrics).
    ``solve_into(w, d, bits, init, ws, rounds=None, sync_free=None)`` (optional; the optimizer
    uses it when present) is the same solver working in a ``Workspace`` ``ws`` kept per tensor:
    no allocation of the weight's size after the first call, results in the workspace's level
    slots (never the one holding ``init``). ``rounds`` caps the alternation rounds of the
    iterative schemes (None: the spec's 10); ``sync_free`` (None: on unless w is on the CPU)
    forbids every host read of a device value, so a step never waits for the GPU. Both options
    leave the default result unchanged bit for bit: ``rounds=None`` is the spec's rule, and
    ``sync_free`` changes how the rule is applied, not the arithmetic (LAT exact sorts every
    value instead of the pruned candidates: the same support, alpha within float rounding).
    """

    name: str
    bits: tuple[int, ...]
    loss_aware: bool
    solve: Solver
    positive_levels: Callable[[int], Sequence[float]]
    steps: Callable[[int], int] = lambda bits: 1
    description: str = ""
    solve_into: Callable[..., tuple[Tensor, Tensor]] | None = None

    def check_bits(self, bits: int) -> None:
        """Raise UserError (a ValueError) unless this scheme supports ``bits``."""
        if isinstance(bits, bool) or not isinstance(bits, int) or bits not in self.bits:
            raise UserError(
                f"scheme {self.name!r} supports bits {', '.join(map(str, self.bits))}, "
                f"not {bits!r}"
            )

    def levels(
        self, bits: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> Tensor:
        """The level set at ``bits``, ascending, as a 1-D tensor (b takes only these values)."""
        self.check_bits(bits)
        pos = sorted(set(float(x) for x in self.positive_levels(bits)))
        full = sorted({-x for x in pos} | set(pos))
        return torch.tensor(full, dtype=dtype, device=device)

    def step_count(self, bits: int) -> int:
        """n: the level spacing is alpha / n (1 for binary and ternary, 2^(bits-1) - 1 for LAQ)."""
        self.check_bits(bits)
        return int(self.steps(bits))


_SCHEMES: dict[str, Scheme] = {}


def _registry() -> Registry[Scheme]:
    # a view over the module's dict as it is now (a test may swap the dict for a copy)
    return Registry("quantizer scheme", _SCHEMES, item_type=Scheme)


def register_scheme(scheme: Scheme) -> Scheme:
    """Add a scheme to the registry (replacing one of the same name) and return it."""
    return _registry().register(scheme)


def available_schemes() -> list[str]:
    """The registered scheme names, sorted."""
    return _registry().names()


def get_scheme(name: str | Scheme) -> Scheme:
    """Look a scheme up by name (a Scheme passes through); UserError (a ValueError) listing the
    valid names if unknown."""
    return _registry().get(name)


def _check_like(name: str, t: Tensor | None, w: Tensor) -> Tensor | None:
    if t is None:
        return None
    if not isinstance(t, Tensor) or t.shape != w.shape:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise UserError(f"{name} must be a tensor of the weight's shape {tuple(w.shape)}, got {shape}")
    if t.device != w.device:
        raise UserError(f"{name} is on {t.device} but the weight is on {w.device}; move it there")
    return t.detach().to(w.dtype)


@torch.no_grad()
def quantize_with_levels(
    w: Tensor,
    scheme: str | Scheme,
    bits: int = 1,
    d: Tensor | None = None,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Quantize ``w`` as ``alpha * b``: returns alpha (0-dim) and b (w's shape, in the level set).

    ``d`` is the diagonal curvature (>= 0, None = constant); ``init`` the previous levels, the
    warm start of the iterative schemes (ignored by the others).
    """
    sch = get_scheme(scheme)
    sch.check_bits(bits)
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise UserError(f"the weight must be a floating-point tensor, got {getattr(w, 'dtype', type(w))}")
    w = w.detach()
    d = _check_like("d (the curvature)", d, w)
    init = _check_like("init (the previous levels)", init, w)
    if w.numel() == 0:
        return torch.zeros((), dtype=w.dtype, device=w.device), torch.zeros_like(w)
    if d is not None and (not sch.loss_aware or not float(d.amax()) > 0):
        d = None
    if w.dtype in _FLOAT_LAYOUT:
        return sch.solve(w, d, bits, init)
    # half precision: solve in float32, return in the weight's dtype
    d, init = (None if t is None else t.float() for t in (d, init))
    alpha, b = sch.solve(w.float(), d, bits, init)
    return alpha.to(w.dtype), b.to(w.dtype)


@torch.no_grad()
def quantize(w: Tensor, scheme: str | Scheme, bits: int = 1, d: Tensor | None = None) -> Tensor:
    """The quantized weight w_hat = alpha * b (same shape, dtype and device as ``w``)."""
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    return b.mul_(alpha)


# --- workspaces ----------------------------------------------------------------------------


class Workspace:
    """Scratch tensors for quantizing one weight tensor, kept from call to call.

    Handed the same workspace for a tensor of the same shape, dtype and device, a built-in solver
    allocates nothing of the weight's size after its first call (the optimizer keeps one per
    layer). Results go into *level slots*, (alpha, b) pairs owned by the workspace: a call never
    writes the slot that holds its ``init``, so the previous levels stay intact (the zig-zag meter
    and BLAQ's trial step read them after the call); any other result of an earlier call may be
    overwritten.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, bool], tuple[tuple, Tensor]] = {}
        self._slots: list[tuple[Tensor, Tensor]] = []

    def buffer(self, name: str, like: Tensor, dtype: torch.dtype | None = None,
               numel: int | None = None, contiguous: bool = False) -> Tensor:
        """A scratch tensor like ``like`` (its memory layout unless ``contiguous``; or 1-D with
        ``numel`` elements), of ``dtype`` (default like's); the same one on every call."""
        dtype = like.dtype if dtype is None else dtype
        if numel is not None:
            key, make = (numel,), lambda: torch.empty(numel, dtype=dtype, device=like.device)
        elif contiguous:
            key, make = tuple(like.shape), lambda: torch.empty(like.shape, dtype=dtype, device=like.device)
        else:
            key = (tuple(like.shape), like.stride())
            make = lambda: torch.empty_like(like, dtype=dtype, memory_format=torch.preserve_format)  # noqa: E731
        slot = (name, dtype, numel is not None or contiguous)
        held = self._buffers.get(slot)
        if held is None or held[0] != key or held[1].device != like.device:
            held = self._buffers[slot] = (key, make())
        return held[1]

    def slots(self, count: int, like: Tensor, avoid: Tensor | None) -> list[tuple[Tensor, Tensor]]:
        """``count`` level slots shaped like ``like`` whose b is not ``avoid`` (the caller's init)."""
        if self._slots and (self._slots[0][1].shape != like.shape
                            or self._slots[0][1].dtype != like.dtype
                            or self._slots[0][1].device != like.device):
            self._slots = []
        free = [s for s in self._slots if s[1] is not avoid]
        while len(free) < count:
            slot = (torch.zeros((), dtype=like.dtype, device=like.device),
                    torch.empty(like.shape, dtype=like.dtype, device=like.device))
            self._slots.append(slot)
            free.append(slot)
        return free[:count]


# --- solvers -------------------------------------------------------------------------------
#
# A solver gets a detached float32 or float64 tensor w with at least one element, d (same
# shape, with a positive entry) or None, the bit width and init (or None), and returns
# (alpha 0-dim, b). Sums over a whole tensor use torch.dot where speed matters (its float32
# rounding, ~1e-5 relative on millions of weights, is far below anything training can see).
# The built-in solvers are written as ``solve_into(w, d, bits, init, ws, rounds, sync_free)``:
# ``ws`` a Workspace, ``rounds`` the alternation cap (None: the spec's 10), ``sync_free`` (None:
# on unless w is on the CPU) never reads a device value on the host: no .item(), no
# data-dependent Python branch; the iterative schemes then run every round and freeze the
# result on the device once the stopping rule is met, which gives the same result as stopping.

_MAX_ROUNDS = 10  # alternation rounds of the iterative schemes (docs/spec.md: at most 10)
_ALPHA_RTOL = 1e-6  # ... or until alpha moves by less than this, relatively
_SORT_BELOW = 1 << 15  # LAT exact sorts a candidate set this small directly
_BUCKET_BITS = 11  # LAT exact on the CPU: buckets of 2^-11 relative width (top mantissa bits)
_MAX_BUCKETS = 48 << _BUCKET_BITS  # ... 48 octaves: values further below share the lowest one
_BLOCK = 1 << 18  # ... and sums them in float64 this many values at a time

# per float dtype: the integer type of the same width, mantissa bits, exponent bias
_FLOAT_LAYOUT = {
    torch.float32: (torch.int32, 23, 127),
    torch.float64: (torch.int64, 52, 1023),
}


def _sync_free(w: Tensor, sync_free: bool | None) -> bool:
    return w.device.type != "cpu" if sync_free is None else bool(sync_free)


def _flat(name: str, t: Tensor, ws: Workspace) -> Tensor:
    """A flat view of t (a copy into the workspace when its memory layout has no flat view)."""
    if t.is_contiguous():
        return t.view(-1)
    return ws.buffer(name, t, contiguous=True).copy_(t).view(-1)


def _signs(w: Tensor, out: Tensor | None = None) -> Tensor:
    """sign(w) with sign(0) = +1 (binary levels); -0.0 counts as 0."""
    return torch.sign(w, out=out).add_(0.5).sign_()


def _solver(solve_into: Callable[..., tuple[Tensor, Tensor]]) -> Solver:
    """The plain ``solve(w, d, bits, init)`` of a workspace solver: a fresh workspace per call."""

    def solve(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None) -> tuple[Tensor, Tensor]:
        return solve_into(w, d, bits, init, Workspace())

    solve.__doc__ = solve_into.__doc__
    return solve


def _bwn(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
         rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """BWN: b = sign(w), alpha = mean |w| (curvature-blind)."""
    ((alpha, b),) = ws.slots(1, w, init)
    a = torch.abs(w, out=ws.buffer("abs", w))
    torch.mean(a, dim=tuple(range(a.dim())), out=alpha)
    return alpha, _signs(w, out=b)


def _lab(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
         rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """LAB: b = sign(w), alpha = sum(d |w|) / sum(d); with constant d this is BWN, bit for bit."""
    if d is None:
        return _bwn(w, d, bits, init, ws)
    ((alpha, b),) = ws.slots(1, w, init)
    a = torch.abs(w, out=ws.buffer("abs", w)).mul_(d)
    dims = tuple(range(a.dim()))
    torch.sum(a, dim=dims, out=alpha).div_(torch.sum(d, dim=dims, out=ws.buffer("s", alpha)))
    return alpha, _signs(w, out=b)


def _twn(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
         rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """TWN: b = sign(w) where |w| > 0.7 mean |w| (else 0), alpha = mean |w| over that support."""
    ((alpha, support),) = ws.slots(1, w, init)
    a = torch.abs(w, out=ws.buffer("abs", w))
    # 1 where |w| > delta, else 0
    torch.sub(a, 0.7 * a.mean(), out=support).sign_().clamp_(min=0)
    count = support.sum()
    alpha.copy_(torch.where(count > 0, a.mul_(support).sum() / count, 0.0))  # 0 for an all-zero w
    return alpha, support.copysign_(w)


# LAT exact ------------------------------------------------------------------------------------
#
# Over the support S (b = sign(w) on S, 0 elsewhere) with its best alpha = sum_S d|w| / sum_S d,
# the objective is sum d w^2 - score(S), score(S) = (sum_S d|w|)^2 / sum_S d. Given alpha, the
# best support is {|w| > alpha/2}, a set of the largest |w|; so the optimum is the highest
# scoring such prefix of |w| sorted in descending order, and that prefix is self-consistent
# (its smallest |w| is above alpha/2 and the next one is not: its own rounding cannot score
# higher). Only prefixes that end between two distinct values count (ties stay together), and
# only prefixes of non-zero weights.


def _best_prefix(
    v: Tensor, dv: Tensor | None, above1: float = 0.0, above0: float = 0.0,
    ws: Workspace | None = None,
) -> tuple[Tensor, Tensor]:
    """Best support among prefixes of the candidate magnitudes ``v`` (any order) with curvature ``dv``.

    ``above1``/``above0`` are sum d|w| and sum d over the weights larger than every candidate
    (always in the support). Returns (alpha, threshold): the support is {|w| >= threshold}.
    Needs no host sync (the CUDA path); with a workspace ``ws`` its scratch tensors live there.
    """
    f64, count = torch.float64, v.numel()

    def buf(name: str, dtype: torch.dtype, numel: int) -> Tensor | None:
        return None if ws is None else ws.buffer(name, v, dtype, numel)

    out = None if ws is None else (buf("sorted", v.dtype, count), buf("order", torch.int64, count))
    v, order = torch.sort(v, descending=True, out=out)
    s1 = buf("s1", f64, count + 1)
    s0 = buf("s0", f64, count + 1)
    if s1 is None:
        s1 = torch.empty(count + 1, dtype=f64, device=v.device)
        s0 = torch.empty(count + 1, dtype=f64, device=v.device)
    s1[:1].zero_()  # s1[k], s0[k]: over the prefix of length k
    s0[:1].zero_()
    if dv is None:
        torch.cumsum(v, 0, dtype=f64, out=s1[1:])
        torch.arange(1, count + 1, dtype=f64, device=v.device, out=s0[1:])
    else:
        dv = torch.index_select(dv, 0, order, out=buf("dv", dv.dtype, count))
        prod = torch.mul(v, dv, out=buf("vd", v.dtype, count))
        torch.cumsum(prod, 0, dtype=f64, out=s1[1:])
        torch.cumsum(dv, 0, dtype=f64, out=s0[1:])
    if above1:
        s1.add_(above1)
    if above0:
        s0.add_(above0)
    closed = buf("closed", torch.bool, count + 1)
    closed = torch.ones(count + 1, dtype=torch.bool, device=v.device) if closed is None else closed.fill_(True)
    flag = buf("flag", torch.bool, count + 1)
    flag = torch.empty(count + 1, dtype=torch.bool, device=v.device) if flag is None else flag
    torch.gt(v[:-1], v[1:], out=closed[1:-1])
    closed[1:].logical_and_(torch.gt(v, 0, out=flag[1:]))
    closed.logical_and_(torch.gt(s0, 0, out=flag))
    score = _score_bound(s1, s0, torch.take(s1, _last(s1)), torch.take(s0, _last(s0)),
                         buf("score", f64, count + 1), buf("score0", f64, count + 1), flag)
    score = torch.where(closed, score, _full(-1.0, score), out=score)
    k = torch.argmax(score)  # the first (shortest) of equal scores
    ok = torch.take(score, k) > 0
    alpha = torch.where(ok, torch.take(s1, k) / torch.take(s0, k), 0.0)
    # cut[k]: the threshold of the prefix of length k (above every value for k = 0)
    top = torch.nextafter(v[:1], v.new_full((1,), float("inf"))).squeeze(0)
    kv = (k - 1).clamp_(min=0)
    threshold = torch.where(ok, torch.where(k > 0, torch.take(v, kv), top), float("inf"))
    return alpha, threshold


def _full(x: float, like: Tensor) -> Tensor:
    """x as a 0-dim tensor of like's dtype and device (``torch.where(..., out=)`` wants tensors)."""
    return torch.full((), x, dtype=like.dtype, device=like.device)


def _last(t: Tensor) -> Tensor:
    return torch.full((), t.numel() - 1, dtype=torch.int64, device=t.device)


def _score_bound(s1: Tensor, s0: Tensor, r1: Tensor | float, r0: Tensor | float,
                 out: Tensor | None = None, scratch: Tensor | None = None,
                 flag: Tensor | None = None) -> Tensor:
    """(s1/r1)^2 / (s0/r0): the score s1^2 / s0 in units that cannot underflow; 0 if s0 = 0.

    ``out``/``scratch`` (float64) and ``flag`` (bool), of s1's shape, receive the result and
    the temporaries when given.
    """
    s1 = torch.div(s1, r1.clamp(min=1e-300) if isinstance(r1, Tensor) else r1, out=out)
    s0 = torch.div(s0, r0.clamp(min=1e-300) if isinstance(r0, Tensor) else r0, out=scratch)
    positive = torch.gt(s0, 0, out=flag)
    s1.mul_(s1).div_(torch.where(positive, s0, _full(1.0, s0), out=s0))
    return torch.where(positive, s1, _full(0.0, s1), out=s1)


def _bucket_sums(idx: Tensor, x: Tensor | None, nb: int, ws: Workspace | None = None) -> Tensor:
    """Per-bucket sums of x (counts if None), accumulated in float64.

    Converts in blocks (into one kept block of ``ws`` when given): a float64 copy of a whole
    4M-weight tensor is a fresh 32 MB allocation that costs more (page faults) than the sums.
    """
    if x is None:
        return torch.bincount(idx, minlength=nb).to(torch.float64)
    out = torch.zeros(nb, dtype=torch.float64, device=idx.device)
    part = torch.empty_like(out)
    block = None if ws is None else ws.buffer("block", x, torch.float64, _BLOCK)
    for ids, xs in zip(idx.split(_BLOCK), x.split(_BLOCK), strict=True):
        xs = xs.to(torch.float64) if block is None else block[: xs.numel()].copy_(xs)
        # the block's sums, added in order as bincount(ids, xs, nb) adds them (faster on the CPU)
        out += part.zero_().scatter_add_(0, ids, xs)
    return out


def _prune(
    a: Tensor, d: Tensor | None, ws: Workspace | None = None
) -> tuple[Tensor, Tensor | None, float, float]:
    """Shrink the candidate magnitudes ``a`` to the few values that can end the best prefix.

    Buckets the values by their top mantissa bits (2^-11 relative width; the bit pattern of a
    non-negative float is monotone in its value), scores every cut between buckets and bounds
    from above the score of any cut inside a bucket, and keeps only the buckets whose bound
    reaches the best cut (with a margin for the rounding of the float64 sums). Repeats with
    finer buckets while many candidates are left. Returns the candidates (with their
    curvature) and sum d|w| and sum d over the weights above them. Reads on the host (the CPU
    path); the first level's weight-sized scratch lives in ``ws`` when given.
    """
    int_type, mantissa, _ = _FLOAT_LAYOUT[a.dtype]
    f64 = torch.float64
    margin = 1e-12 + 16 * a.numel() * 2.0**-53  # relative rounding of the sums and scores
    above1 = above0 = 0.0
    shift = mantissa - _BUCKET_BITS
    level_ws = ws  # the first level's scratch (weight-sized) lives in ws
    while a.numel() > _SORT_BELOW:
        bits = a.view(int_type)
        lo_bits, hi_bits = (int(x) for x in torch.aminmax(bits))
        base = max(lo_bits >> shift, (hi_bits >> shift) - _MAX_BUCKETS + 1)
        nb = (hi_bits >> shift) - base + 1
        idx = torch.bitwise_right_shift(
            bits, shift, out=None if level_ws is None else level_ws.buffer("idx", bits)
        ).sub_(base).clamp_(min=0)
        da = None if d is None else torch.mul(
            d, a, out=None if level_ws is None else level_ws.buffer("da", a))
        c1 = _bucket_sums(idx, a if d is None else da, nb, ws)
        c0 = _bucket_sums(idx, d, nb, ws)
        # s1[j], s0[j]: sum d|w| and sum d over the buckets >= j and above (j = 0..nb)
        s1 = torch.cat((torch.cumsum(c1.flip(0), 0).flip(0), c1.new_zeros(1))).add_(above1)
        s0 = torch.cat((torch.cumsum(c0.flip(0), 0).flip(0), c0.new_zeros(1))).add_(above0)
        r1, r0 = float(s1[0]), float(s0[0])
        if not r1 > 0:  # no weight with curvature is non-zero: nothing beats the empty support
            return a[:0], None if d is None else d[:0], 0.0, 0.0
        best = float(_score_bound(s1, s0, r1, r0).max())
        # a cut inside bucket j: the buckets above it plus part of this one, whose values are
        # below its top; the score is quasi-convex in the part taken, so an end bounds it
        top = torch.arange(base + 1, base + nb + 1, dtype=torch.int64).bitwise_left_shift_(shift)
        top = top.to(int_type).view(a.dtype).to(f64)
        bound = torch.maximum(
            _score_bound(s1[1:], s0[1:], r1, r0),
            _score_bound(s1[1:] + top * c0, s0[1:] + c0, r1, r0),
        )
        keep = torch.nonzero(bound >= best * (1 - margin)).flatten()
        j_lo, j_hi = int(keep.min()), int(keep.max())
        above1, above0 = float(s1[j_hi + 1]), float(s0[j_hi + 1])
        if (j_lo == 0 and j_hi == nb - 1) or shift == 0:  # no progress, or no finer buckets
            if j_lo > 0 or j_hi < nb - 1:
                a, d = _select(a, d, idx, j_lo, j_hi, int_type, level_ws)
            break
        a, d = _select(a, d, idx, j_lo, j_hi, int_type, level_ws)
        level_ws = None
        # next level: about 2^11 buckets over the bit range left
        span = (j_hi - j_lo + 1) << shift
        shift = max(0, min(shift - 1, span.bit_length() - _BUCKET_BITS))
    return a, d, above1, above0


def _select(
    a: Tensor, d: Tensor | None, idx: Tensor, j_lo: int, j_hi: int, int_type: torch.dtype,
    ws: Workspace | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The values (and curvatures) whose bucket index lies in [j_lo, j_hi]."""
    # clearing the sign bit of idx - j_lo makes the negative differences huge: one comparison
    offset = idx.sub_(j_lo).bitwise_and_(torch.iinfo(int_type).max)
    mask = None if ws is None else ws.buffer("inside", offset, torch.bool)
    inside = torch.nonzero(torch.le(offset, j_hi - j_lo, out=mask)).flatten()
    return a[inside], None if d is None else d[inside]


def _lat_exact(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
               rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """LAT exact: the optimal ternary quantization, by the sorted-prefix method (O(n log n)).

    Reading on the host (the CPU default), the sort is restricted to the candidates ``_prune``
    leaves (a few thousand values near the optimal threshold; a full sort of 4M values would
    take half a second); sync-free (the CUDA default) everything is sorted (fast there).
    """
    ((alpha, support),) = ws.slots(1, w, init)
    a = torch.abs(w, out=ws.buffer("abs", w))
    af = _flat("flat abs", a, ws)
    df = None if d is None else _flat("d", d, ws)
    if _sync_free(w, sync_free):
        best_alpha, threshold = _best_prefix(af, df, ws=ws)
    else:
        cand, dcand, above1, above0 = _prune(af, df, ws)
        if cand.numel() == 0:
            return alpha.zero_(), support.zero_()
        whole = cand.numel() == af.numel()  # nothing pruned (a small tensor): sizes are fixed
        best_alpha, threshold = _best_prefix(cand, dcand, above1, above0, ws if whole else None)
    # 1 where |w| >= threshold, else 0
    torch.sub(a, threshold, out=support).sign_().add_(1).clamp_(max=1)
    alpha.copy_(best_alpha)
    return alpha, support.copysign_(w)


# LAT approx and LAQ: alternation ------------------------------------------------------------
#
# Both half-steps lower the objective when the levels are rounded to the nearest (linear) level;
# the log-domain rounding is not always the nearest level, so a round is kept only when it
# lowers the objective. The module docstring gives the start and the stopping rule. A round
# whose levels equal the current ones has the same sums, does not lower the objective and so
# stops the alternation: no separate test for a change is needed.


def _recip(x: Tensor | float) -> Tensor | float:
    """1 / x (a double, or a float64 0-dim tensor: the same rounding)."""
    return x.reciprocal() if isinstance(x, Tensor) else 1.0 / x


def _round_linear(w: Tensor, step: Tensor | float, n: int, out: Tensor,
                  ws: Workspace | None = None) -> Tensor:
    """Level index round(clip(w / step, -n, n)): the nearest of the 2n + 1 levels, in steps."""
    torch.mul(w, _recip(step), out=out)
    return out.clamp_(-n, n).round_()


def _round_log(w: Tensor, alpha: Tensor | float, n: int, out: Tensor,
               ws: Workspace | None = None) -> Tensor:
    """Log-domain rounding of x = w / alpha to sign(x) 2^e, e in {-(n-1), ..., 0}, or to 0.

    e = floor(log2(sqrt(2) |x|)), clipped to [-(n-1), 0]: the nearest level in log2 of the
    magnitude (2^k wins on [2^(k-1/2), 2^(k+1/2)), the boundary rounded once in the product
    sqrt(2) |x|). The level is 0 when |x| < 2^-n, half the smallest level (as in ternary
    rounding). Computed on the float bit pattern: the exponent field is floor(log2).
    """
    int_type, mantissa, bias = _FLOAT_LAYOUT[w.dtype]
    torch.mul(w, _recip(alpha), out=out).abs_()
    # 1 where |x| >= 2^-n (biased exponent of |x| >= bias - n), else 0; at least 2^(1-bias)
    keep = None if ws is None else ws.buffer("keep", out, int_type)
    keep = torch.bitwise_right_shift(out.view(int_type), mantissa, out=keep)
    keep.sub_(max(bias - n, 1) - 1).clamp_(0, 1)
    level = out.mul_(math.sqrt(2.0)).view(int_type).bitwise_right_shift_(mantissa)
    level.clamp_(bias - (n - 1), bias).bitwise_left_shift_(mantissa).mul_(keep)
    return out.copysign_(w)


def _sums(w: Tensor, d: Tensor | None, u: Tensor, tmp: Tensor | None) -> tuple[Tensor, Tensor]:
    """(sum d w u, sum d u^2) as 0-dim tensors: the best scale for levels u is their ratio."""
    if d is None:
        return torch.dot(w, u), torch.dot(u, u)
    torch.mul(d, u, out=tmp)
    return torch.dot(tmp, w), torch.dot(tmp, u)


def _fit(w: Tensor, d: Tensor | None, u: Tensor, tmp: Tensor | None) -> tuple[float, float]:
    """The sums of ``_sums`` read on the host, as Python floats."""
    num, den = _sums(w, d, u, tmp)
    return float(num), float(den)


def _better(num: float, den: float, than: tuple[float, float]) -> bool:
    """Whether levels with sums (num, den) lower the objective more than those with ``than``.

    The objective is sum d w^2 - num^2 / den (for num, den > 0); compared as ratios, which
    cannot underflow for tiny weights.
    """
    if not (num > 0 and den > 0):
        return False
    num0, den0 = than
    if not (num0 > 0 and den0 > 0):
        return True
    return (num / num0) * (num / num0) > den / den0


def _alternate(
    w: Tensor,
    d: Tensor | None,
    n: int,
    start: Tensor | None,
    project: Callable[..., Tensor],
    unit: int,
    ws: Workspace,
    bufs: tuple[Tensor, Tensor],
    rounds: int,
) -> tuple[float, Tensor | None]:
    """Alternate scale = sum(d w u) / sum(d u^2) and u = project(w, scale) from ``start``.

    Works in level units u = b * unit (unit = n for linear levels, so u is an integer; 1 for
    log levels) and scale = alpha / unit. ``start`` is one of ``bufs`` (two flat level buffers)
    or None. Returns (scale, u), u one of ``bufs``, or (0, None) when no levels with a positive
    scale lower the objective (no non-zero weight with curvature). Reads the sums on the host.
    """
    tmp = None if d is None else ws.buffer("du", w)
    nothing = (0.0, 0.0)
    fit = nothing if start is None else _fit(w, d, start, tmp)
    if not _better(*fit, than=nothing):  # no warm start, or a useless one
        mean = float(torch.abs(w, out=ws.buffer("abs", w)).mean())
        if mean == 0.0:
            return 0.0, None
        start = project(w, 4 * n / (2 * n + 1) * mean / unit, n, bufs[0], ws)
        fit = _fit(w, d, start, tmp)
        if not _better(*fit, than=nothing):
            return 0.0, None
    u, spare = start, bufs[1]  # start is bufs[0]
    scale = fit[0] / fit[1]
    for _ in range(rounds):
        v = project(w, scale, n, spare, ws)
        new_fit = _fit(w, d, v, tmp)
        if not _better(*new_fit, than=fit):  # also when v equals u: the same sums
            break
        u, spare, fit = v, u, new_fit
        previous, scale = scale, fit[0] / fit[1]
        if abs(scale - previous) <= _ALPHA_RTOL * previous:
            break
    return scale, u


def _alternate_on_device(
    w: Tensor,
    d: Tensor | None,
    n: int,
    start: Tensor | None,
    project: Callable[..., Tensor],
    unit: int,
    ws: Workspace,
    bufs: tuple[Tensor, Tensor],
    rounds: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """``_alternate`` without a host read: the same arithmetic (in float64 0-dim tensors), every
    round run, the levels and scale frozen by ``torch.where`` once the rule stops them.

    ``start`` (if given) is ``bufs[0]``. Returns (scale, u, valid): u is ``bufs[0]``, and where
    ``valid`` is false (no useful levels) the caller returns alpha 0 and b 0.
    """
    f64 = torch.float64
    tmp = None if d is None else ws.buffer("du", w)
    u, v = bufs

    def fit(levels: Tensor) -> tuple[Tensor, Tensor]:
        num, den = _sums(w, d, levels, tmp)
        return num.to(f64), den.to(f64)

    mean = torch.abs(w, out=ws.buffer("abs", w)).mean().to(f64)
    has_mean = mean > 0
    scale0 = torch.where(has_mean, 4 * n / (2 * n + 1) * mean / unit, 1.0)  # 1: any finite value
    cold = project(w, scale0, n, u if start is None else v, ws)
    num, den = fit(cold)
    cold_ok = has_mean & (num > 0) & (den > 0)
    if start is None:
        ok = cold_ok
    else:
        num1, den1 = fit(start)
        warm_ok = (num1 > 0) & (den1 > 0)
        torch.where(warm_ok, start, cold, out=u)
        num, den = torch.where(warm_ok, num1, num), torch.where(warm_ok, den1, den)
        ok = warm_ok | cold_ok
    scale = torch.where(ok, num / den, 1.0)
    active = ok
    for _ in range(rounds):
        v = project(w, scale, n, v, ws)
        num_v, den_v = fit(v)
        ratio = num_v / num
        accept = active & (num_v > 0) & (den_v > 0) & (ratio * ratio > den_v / den)
        torch.where(accept, v, u, out=u)
        num, den = torch.where(accept, num_v, num), torch.where(accept, den_v, den)
        new_scale = num / den
        active = accept & ((new_scale - scale).abs() > _ALPHA_RTOL * scale)
        scale = torch.where(accept, new_scale, scale)
    return scale, u, ok


def _iterate(
    w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
    rounds: int | None, sync_free: bool | None, log: bool,
) -> tuple[Tensor, Tensor]:
    """LAT approx / LAQ linear / LAQ log: the warm start from ``init``, then the alternation."""
    n = 2 ** (bits - 1) - 1
    rounds = _MAX_ROUNDS if rounds is None else rounds
    (alpha0, b0), (alpha1, b1) = ws.slots(2, w, init)
    bufs = (b0.view(-1), b1.view(-1))
    wf = _flat("w", w, ws)
    df = None if d is None else _flat("d", d, ws)
    project, unit = (_round_log, 1) if log else (_round_linear, n)
    start = None
    if init is not None:
        flat_init = _flat("init", init, ws)
        if log:
            start = _round_log(flat_init, 1.0, n, bufs[0], ws)
        else:
            start = torch.mul(flat_init, n, out=bufs[0]).clamp_(-n, n).round_()
    if _sync_free(w, sync_free):
        scale, u, ok = _alternate_on_device(wf, df, n, start, project, unit, ws, bufs, rounds)
        if unit != 1:
            u.div_(unit)
        torch.where(ok, u, _full(0.0, u), out=u)
        return alpha0.copy_(torch.where(ok, scale * unit, 0.0)), b0
    scale, u = _alternate(wf, df, n, start, project, unit, ws, bufs, rounds)
    if u is None:
        return alpha0.zero_(), b0.zero_()
    if unit != 1:
        u.div_(unit)
    # the alpha of the slot that holds the levels: a result stays whole while it is the init
    if u.data_ptr() == b0.data_ptr():
        return alpha0.fill_(scale * unit), b0
    return alpha1.fill_(scale * unit), b1


def _laq_linear(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
                rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """LAQ linear (and LAT approx at 2 bits): levels {0, +-1/n, ..., +-1}, n = 2^(bits-1) - 1."""
    return _iterate(w, d, bits, init, ws, rounds, sync_free, log=False)


def _laq_log(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None, ws: Workspace,
             rounds: int | None = None, sync_free: bool | None = None) -> tuple[Tensor, Tensor]:
    """LAQ log: levels {0, +-2^-(n-1), ..., +-1/2, +-1}, n = 2^(bits-1) - 1, log-domain rounding."""
    return _iterate(w, d, bits, init, ws, rounds, sync_free, log=True)


def _linear_levels(bits: int) -> list[float]:
    n = 2 ** (bits - 1) - 1
    return [k / n for k in range(n + 1)]


def _log_levels(bits: int) -> list[float]:
    n = 2 ** (bits - 1) - 1
    return [0.0] + [2.0**-j for j in range(n)]


def _laq_steps(bits: int) -> int:
    return 2 ** (bits - 1) - 1


_LAQ_BITS = (2, 3, 4, 5, 6, 7, 8)

for _scheme in (
    Scheme("bwn", (1,), False, _solver(_bwn), lambda bits: (1.0,),
           description="binary, alpha = mean |w| (XNOR-Net BWN)",
           solve_into=_bwn),
    Scheme("twn", (2,), False, _solver(_twn), lambda bits: (0.0, 1.0),
           description="ternary, threshold 0.7 mean |w| (TWN)",
           solve_into=_twn),
    Scheme("lab", (1,), True, _solver(_lab), lambda bits: (1.0,),
           description="binary, alpha = sum(d |w|) / sum(d) (loss-aware binarization)",
           solve_into=_lab),
    Scheme("lat-exact", (2,), True, _solver(_lat_exact), lambda bits: (0.0, 1.0),
           description="ternary, exact loss-aware optimum (sorted prefixes)",
           solve_into=_lat_exact),
    Scheme("lat-approx", (2,), True, _solver(_laq_linear), lambda bits: (0.0, 1.0),
           description="ternary, loss-aware alternation from the previous levels",
           solve_into=_laq_linear),
    Scheme("laq-linear", _LAQ_BITS, True, _solver(_laq_linear), _linear_levels, _laq_steps,
           description="2^bits - 1 evenly spaced levels, loss-aware alternation",
           solve_into=_laq_linear),
    Scheme("laq-log", _LAQ_BITS, True, _solver(_laq_log), _log_levels, _laq_steps,
           description="0 and signed powers of two, loss-aware alternation, log-domain rounding",
           solve_into=_laq_log),
):
    register_scheme(_scheme)
