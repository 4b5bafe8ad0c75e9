"""Zig-zag metrics: how much the quantized weights oscillate during training (docs/spec.md section 4).

The optimizer hands the meter each step the quantized weights of all quantized layers before and
after the step, as ``w_hat = alpha * b`` per layer (the step the optimizer really took: for BLAQ
the backtracked point, never the trial point). Our definitions, per step t, over all quantized
layers together:

- update: ``u_t = w_hat_{t+1} - w_hat_t`` (every coordinate of every quantized layer);
- update cosine: ``<u_t, u_{t-1}> / (|u_t| |u_{t-1}|)``; undefined (NaN, skipped in means) on
  the first step and whenever one of the two updates is zero. Negative values mean zig-zag;
- direction-flip rate: among coordinates with ``u_t != 0`` and ``u_{t-1} != 0``, the fraction
  with ``sign(u_t) = -sign(u_{t-1})``; undefined when there is no such coordinate;
- oscillation (after Nagel et al. 2022), on the levels b: weight i oscillates at step t when its
  level changes (``b_new != b_old``) in the direction opposite to its previous level change (the
  last step at which its level changed, however long ago);
- oscillation frequency: per weight, the exponential moving average ``f <- mu f + (1 - mu) e``
  of its oscillation events ``e`` (0 or 1), ``mu = 0.99`` by default, starting from 0.
  ``zz_osc_freq`` is the mean of f over all quantized weights, ``zz_osc_share`` the share of
  weights with f above the threshold (0.01 by default: an isolated event lifts f to exactly
  0.01, so a weight counts once it oscillated about twice within its last ~100 steps);
- oscillation amplitude: the mean of ``|b_new - b_old| * n`` over oscillation events, where
  ``n = Scheme.step_count(bits)``: the jump in units of the level step ``alpha / n`` (a binary
  sign flip is 2; for logarithmic levels, whose spacing is not uniform, it is the same formula).

Per epoch (``epoch_summary``): the cosine and the flip rate are means of their per-step values
over the steps where they are defined, the amplitude the mean over the epoch's events (NaN when
there were none, as are the other means without a defined step), the frequency and the share
are read at the end of the epoch. Everything accumulates on the weights' device; only
``epoch_summary()``, ``pop_trace()`` and ``state_dict()`` copy to the host.

The per-iteration trace (``pop_trace``) keeps at most ``max_trace`` iterations: it records every
``stride``-th step (stride 1 at first), and when it is full it drops every other record and
doubles the stride, so a trace of any length is an evenly decimated sample of the steps. It also
keeps the full-precision and quantized values of ``n_tracked`` fixed coordinates of the first
quantized layer (evenly spaced flat indices) after each recorded step.

State layouts. The eager meter keeps per weight the direction of its last level change (-1, 0, 1)
and its frequency f, and the previous update u_{t-1}. The compiled meter (``compile=True``) packs
direction and frequency into one number per weight: ``s = direction * max(f, 2^-100)`` (s = 0:
the weight's level never changed; frequencies below 2^-100 count as 0), and ``direction * f * S``
right after an oscillation event (S the power of 2 with ``2 < S (1 - mu) (1 - 2^-8) <= 4``, so
that S times 1 - mu as rounded to the levels' dtype, float32 or bfloat16, is above 2; f <= 1 always,
so |s| > 2 marks the event: the pass counts the events from the state it writes, which lets
inductor update the state in place within the loop of the sums). When the caller promises
to keep each step's levels (``update(..., levels_kept=True)``: the optimizers with
``compile=True`` keep three level buffers per layer), recomputes u_{t-1} from the levels of the
step before instead of storing it: one read and one write per weight per step for the state, no
write of u. A weight's first level change writes |s| = 2^-110 (f = 0 as below the floor, but
told apart from a frequency that decayed there). With levels of -1 and +1 only (bwn and lab:
``levels_binary=True``) every change after a weight's first goes against the last one (an
event), as long as every earlier change went to the level the weight holds: from a fresh state
on, through compiled steps whose levels continue each other's (kept as promised) or a loaded
checkpoint's. While that chain holds, the state the last step wrote says exactly where that step
changed a level (a mark), and by how much (2 in the state's direction), so the levels of two
steps ago need no read either; levels that do not continue, non-binary levels or an eager step
end it (the old levels are read from then on). On the CPU that pass over float32 levels runs
in ``zigzag.c`` (``benchmark/quant/native.py``; ``ZigZagMeter.native = False`` or
``BLAQ_NATIVE=0`` keeps inductor's): the same state bit for bit, and the step's sums from four
counts per layer, since with +-1 levels and one alpha per layer an update takes one of four
values per weight (``_binary_sums``): the counts of moved, flipped and oscillating weights are
the compiled pass's, the norm and dot product exact where the compiled pass rounds a float32
sum (the cosine differs from its in the last bits, a few 1e-6 relative). ``state_dict()``
always holds the eager layout (dir, freq, u_prev), so checkpoints load into either.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.errors import UserError
from benchmark.quant import native
from benchmark.quant.fused import compile_variant, flat

_PIECE = 1 << 19  # the least piece of a layer that a thread of its own measures (``zigzag.c``)

MAX_TRACE = 5000  # iterations a trace keeps at most (decimated evenly beyond)
SUMMARY_KEYS = ("zz_cosine", "zz_flip_rate", "zz_osc_freq", "zz_osc_share", "zz_osc_amplitude")

# slots of the per-epoch accumulator
_COS_SUM, _COS_N, _FLIP_SUM, _FLIP_N, _EVENTS, _AMP_SUM, _STEPS = range(7)
_FLOOR = 2.0**-100  # the least |s| of a packed state with a direction (stands for f = 0)
_FIRST = 2.0**-110  # |s| right after a weight's first level change (f = 0 then; below the floor)
_EVENT_MARK = 2.0  # |s| above this: an oscillation event at the step that wrote the state


class ZigZagMeter:
    """Per-step zig-zag statistics of the quantized weights, accumulated on the device."""

    def __init__(
        self,
        momentum: float = 0.99,
        threshold: float = 0.01,
        n_tracked: int = 8,
        max_trace: int = MAX_TRACE,
        compile: bool = False,
    ) -> None:
        """``compile=True`` measures each layer in one ``torch.compile``d pass (equal to the
        default within float rounding: the sums run in another order); it may be switched
        between steps (the state changes layout at the next step)."""
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"zig-zag momentum must lie in [0, 1), not {momentum}")
        if n_tracked < 1 or max_trace < 2:
            raise UserError(
                f"zig-zag meter needs n_tracked >= 1 and max_trace >= 2, "
                f"not {n_tracked} and {max_trace}"
            )
        self.momentum = float(momentum)
        self.threshold = float(threshold)
        self.n_tracked = int(n_tracked)
        self.max_trace = int(max_trace)
        self.compile = bool(compile)
        # the compiled pass over +-1 levels by zigzag.c where it applies and builds (same state,
        # exact sums: _binary_sums); False, or BLAQ_NATIVE=0, keeps inductor's pass
        self.native = True
        self._native_consts: dict[torch.dtype, list[float]] = {}
        self.iteration = 0  # steps observed so far
        self._u_prev: list[Tensor] | None = None  # the previous update, when it is stored
        self._u_next: list[Tensor] = []  # scratch buffers: this step's update is written here
        self._scratch: list[tuple[Tensor, Tensor]] = []
        # eager layout: sign of each weight's last level change (0: none yet), frequency
        self._dirs: list[Tensor] = []
        self._freqs: list[Tensor] = []
        # compiled layout: the packed state (module docstring) and the buffers of the next one
        self._packed: list[Tensor] = []
        # the previous step's (alpha_old, b_old, alpha_new, b_new) per layer, when the caller
        # keeps them (levels_kept): the previous update is recomputed from them, not stored
        self._kept: list[tuple[Tensor, Tensor, Tensor, Tensor]] | None = None
        # every weight's last level change (if any) went to its current level, which is -1 or
        # +1: true from a fresh state on, through compiled calls promised +-1 levels that
        # continue each other's levels; then every later change is an event, and the marks of
        # the state tell the last step's changes ("binary" pass)
        self._binary_chain = False
        self._resumed = False  # loaded from a checkpoint: its next step's levels continue it
        self._consts: dict[tuple, tuple[Tensor, ...]] = {}
        self._norm2_prev: Tensor | None = None
        self._acc: Tensor | None = None
        self._tracked: Tensor | None = None
        self._stride = 1
        self._trace_iters: list[int] = []
        self._trace: Tensor | None = None  # (max_trace, 3): cosine, flip rate, oscillation rate
        self._traj: Tensor | None = None  # (max_trace, 2, K): w and w_hat at tracked coordinates

    def _setup(self, b: Sequence[Tensor]) -> None:
        dev = b[0].device
        if self.compile:
            self._packed = [_empty(x).zero_() for x in b]
        else:
            self._dirs = [_empty(x).zero_() for x in b]
            self._freqs = [_empty(x).zero_() for x in b]
        self._acc = torch.zeros(7, dtype=torch.float64, device=dev)
        self._binary_chain = True  # no weight has changed yet
        numel = b[0].numel()
        k = min(self.n_tracked, numel)
        self._tracked = torch.linspace(0, numel - 1, k, device=dev).round().long()
        self._trace = torch.full((self.max_trace, 3), float("nan"), device=dev)
        self._traj = torch.full((self.max_trace, 2, k), float("nan"), device=dev)

    # --- the two state layouts --------------------------------------------------------------

    @property
    def _dir(self) -> list[Tensor]:
        """The direction of each weight's last level change, per layer (decoded when packed)."""
        return self._dirs if not self._packed else [torch.sign(s) for s in self._packed]

    @property
    def _freq(self) -> list[Tensor]:
        """The oscillation frequency of each weight, per layer (decoded when packed)."""
        if not self._packed:
            return self._freqs
        return [_unpack_freq(s, self._event_scale) for s in self._packed]

    @property
    def _event_scale(self) -> float:
        """S of the packed layout: the power of 2 with 2 < S (1 - momentum) (1 - 2^-8) <= 4. The
        pass adds 1 - momentum rounded to the state's dtype (``_constants``: bfloat16 rounds it
        by at most 2^-9 relative), and an event's S f must stay above 2 after that rounding."""
        rest = (1.0 - self.momentum) * (1.0 - 2.0**-8)
        return 2.0 ** (math.floor(math.log2(_EVENT_MARK / rest)) + 1)

    def _to_eager_layout(self) -> None:
        """Unpack the state, store the previous update if it was to be recomputed; allocate the
        eager path's buffers (once)."""
        if self._packed:
            self._dirs, self._freqs = self._dir, self._freq
            self._packed = []
        self._store_kept_update()
        if len(self._u_next) != len(self._dirs):
            self._u_next = [_empty(x) for x in self._dirs]
        if len(self._scratch) != len(self._dirs):
            self._scratch = [_scratch(x) for x in self._dirs]

    def _to_compiled_layout(self) -> None:
        if self._dirs:
            self._packed = [_pack(d, f) for d, f in zip(self._dirs, self._freqs, strict=True)]
            self._dirs, self._freqs, self._scratch = [], [], []

    def _constants(self, like: Tensor) -> tuple[Tensor, ...]:
        """momentum, 1 - momentum (rounded as the eager path rounds it), the floor of the
        packed frequencies, the first-change mark, S and 1/S as 0-dim tensors of like's dtype
        and device (kept): as tensors, not Python floats, they are reads of the compiled pass,
        and with them inductor fuses the state's update into the loop of the sums (with floats
        it wrote the state in a second loop)."""
        key = (like.dtype, like.device)
        consts = self._consts.get(key)
        if consts is None:
            values = (self.momentum, 1.0 - self.momentum, _FLOOR, _FIRST, self._event_scale,
                      1.0 / self._event_scale)
            consts = self._consts[key] = tuple(
                torch.tensor(v, dtype=like.dtype, device=like.device) for v in values)
        return consts

    def _kept_update(self, i: int, out: Tensor | None = None) -> Tensor:
        """Layer i's previous update, recomputed from the kept levels (as the compiled pass
        computes it, so that a stored copy continues a run exactly)."""
        a0, b0, a1, b1 = self._kept[i]
        u = torch.mul(b1, a1, out=out)
        return u.sub_(torch.mul(b0, a0))

    def _store_kept_update(self) -> None:
        """Write the previous update into buffers (the caller no longer keeps its levels)."""
        if self._kept is None:
            return
        if self._u_prev is None or len(self._u_prev) != len(self._kept):
            self._u_prev = [_empty(b1) for _, _, _, b1 in self._kept]
        for i, u in enumerate(self._u_prev):
            self._kept_update(i, u)
        self._kept = None

    # --- one step ----------------------------------------------------------------------------

    @torch.no_grad()
    def update(
        self,
        alpha_old: Sequence[Tensor],
        b_old: Sequence[Tensor],
        alpha_new: Sequence[Tensor],
        b_new: Sequence[Tensor],
        level_steps: Sequence[int],
        w_first: Tensor | None = None,
        levels_kept: bool = False,
        levels_binary: bool = False,
    ) -> None:
        """Record one step in which layer l's w_hat went from alpha_old[l]*b_old[l] to alpha_new[l]*b_new[l].

        ``level_steps[l]`` is n of layer l (its level spacing is alpha/n); ``w_first`` is the
        full-precision weight of the first layer after the step (for the trajectories).
        ``levels_kept=True`` promises that the four tensors of every layer stay unchanged until
        the next call (and through ``state_dict()`` in between): the compiled meter then
        recomputes this step's update from them at the next step instead of writing it out
        (the eager meter stores it either way; its results do not depend on the promise).
        ``levels_binary=True`` (with ``levels_kept``) promises that every level is -1 or +1: the
        compiled meter then reads the previous step's level change off its state instead of the
        levels of two steps ago (one read per weight less; same numbers), while every step since
        its state began was so promised and continued the last one's levels (module docstring).
        """
        if self._acc is None:
            self._setup(b_new)
        if self.compile:
            norm2, dot, flips, both, events, amp = self._layers_compiled(
                alpha_old, b_old, alpha_new, b_new, level_steps, levels_kept, levels_binary)
        else:
            norm2, dot, flips, both, events, amp = self._layers_eager(
                alpha_old, b_old, alpha_new, b_new, level_steps)
        total = sum(x.numel() for x in b_new)
        nan = torch.full((), float("nan"), device=norm2.device)
        if dot is None:
            cosine = flip_rate = nan
        else:
            cosine = dot / (norm2.sqrt() * self._norm2_prev.sqrt())
            flip_rate = flips / both
        self._norm2_prev = norm2
        osc_rate = events / total
        step = torch.stack([cosine.float(), flip_rate.float(), osc_rate.float()])
        defined = step[:2].isfinite()
        self._acc += torch.stack([
            step[0].nan_to_num(0.0).double(), defined[0].double(),
            step[1].nan_to_num(0.0).double(), defined[1].double(),
            events.double(), amp.double(), torch.ones((), dtype=torch.float64, device=nan.device),
        ])
        self._record(step, alpha_new[0], b_new[0], w_first)
        self.iteration += 1

    def _layers_eager(self, alpha_old, b_old, alpha_new, b_new, level_steps) -> tuple:
        """The per-layer work, op by op; returns the sums over all layers (norm2, dot, flips,
        moved, events, amplitude sum; dot, flips and moved None on the first step)."""
        self._to_eager_layout()
        dot = norm2 = flips = both = events = amp = None
        for i, (a0, b0, a1, b1, n) in enumerate(
            zip(alpha_old, b_old, alpha_new, b_new, level_steps, strict=True)
        ):
            u, (s1, s2) = self._u_next[i], self._scratch[i]
            torch.mul(b1, a1, out=u)
            u.addcmul_(b0, a0, value=-1)
            uf = u.view(-1)
            norm2 = _add(norm2, torch.dot(uf, uf))
            if self._u_prev is not None:
                prod = torch.mul(u, self._u_prev[i], out=s1).view(-1)
                dot = _add(dot, prod.sum())
                agree = prod.sign_()  # +1 same direction, -1 reversed, 0 where one did not move
                moved = torch.dot(agree, agree)
                both = _add(both, moved)
                flips = _add(flips, (moved - agree.sum()) / 2)
            # oscillation: a level change against the direction of this weight's previous change
            change = torch.sub(b1, b0, out=s1)
            direction = self._dirs[i]
            torch.sign(change, out=s2)
            against = change.mul_(direction).clamp_(max=0)  # -|change| at events, 0 elsewhere
            amp = _add(amp, against.sum() * -n)
            against.sign_()  # -1 at events
            events = _add(events, -against.sum())
            self._freqs[i].mul_(self.momentum).sub_(against, alpha=1.0 - self.momentum)
            direction.add_(s2, alpha=2).sign_()  # the new change where there is one
        if self._u_prev is None:
            self._u_prev = [_empty(x) for x in b_new]
        self._u_prev, self._u_next = self._u_next, self._u_prev  # swap: no copy
        self._binary_chain = self._resumed = False  # the eager layout keeps no marks
        return norm2, dot, flips, both, events, amp

    def _layers_compiled(self, alpha_old, b_old, alpha_new, b_new, level_steps,
                         levels_kept: bool, levels_binary: bool = False) -> tuple:
        """The per-layer work, one compiled pass per layer (``_layer``); same returns."""
        if any(x.dtype == torch.float16 for x in b_new):
            raise UserError("the compiled zig-zag meter cannot take float16 levels (its packed "
                            "state goes down to 2^-110, below float16's range); use "
                            "compile=False or float32 levels")
        self._to_compiled_layout()
        first = self._u_prev is None and self._kept is None
        store = not levels_kept
        if store and len(self._u_next) != len(b_new):
            self._u_next = [_empty(x) for x in b_new]
        dot = norm2 = flips = both = events = amp = None
        layers = list(enumerate(zip(alpha_old, b_old, alpha_new, b_new, level_steps, strict=True)))
        kinds = []
        for i, (a0, b0, a1, b1, n) in reversed(layers):  # the last levels written first (cached)
            prev_alpha = prev_b = u_prev = None
            if first:
                kind = "first"
            elif self._kept is not None and b0 is self._kept[i][3] and a0 is self._kept[i][2]:
                # u_{t-1} = alpha_old * b_old - (its alpha_old * b_old); binary: its b_old
                # from the state the last pass wrote (this layer's, in the same layout)
                binary = levels_binary and self._binary_chain
                kind = "binary" if binary else "kept"
                prev_alpha, prev_b = self._kept[i][0], None if binary else self._kept[i][1]
            else:  # a stored update, or kept levels that do not continue into this step
                kind = "stored"
                u_prev = self._u_prev[i] if self._kept is None else self._kept_update(i)
            kinds.append(kind)
            u = self._u_next[i] if store else None
            sums = None
            if kind == "binary" and self.native and u is None:  # (it writes no update)
                sums = self._binary_native(a0, b0, a1, b1, self._packed[i], prev_alpha, n)
            if sums is None:
                fb0, fb1, fstate, fu, fprev_b, fu_prev = flat(
                    b0, b1, self._packed[i], u, prev_b, u_prev)
                sums = _layer_fn(kind, store)(
                    a0, fb0, a1, fb1, fstate, fu, prev_alpha, fprev_b, fu_prev,
                    *self._constants(b1), float(n))
            norm2, events, amp = _add(norm2, sums[0]), _add(events, sums[1]), _add(amp, sums[2])
            if kind != "first":
                dot, both, flips = _add(dot, sums[3]), _add(both, sums[4]), _add(flips, sums[5])
        if store:
            if self._u_prev is None or len(self._u_prev) != len(b_new):
                self._u_prev = [_empty(x) for x in b_new]
            self._u_prev, self._u_next = self._u_next, self._u_prev
            self._kept = None
        else:
            self._kept = list(zip(alpha_old, b_old, alpha_new, b_new, strict=True))
            self._u_prev = None
        # the chain goes on through +-1 levels that continued from the last call (the promise:
        # unchanged since) or from the checkpoint just loaded (the resume contract)
        continued = self._resumed or "stored" not in kinds
        self._binary_chain = self._binary_chain and levels_binary and not store and continued
        self._resumed = False
        return norm2, dot, flips, both, events, amp

    def _binary_native(self, a0: Tensor, b0: Tensor, a1: Tensor, b1: Tensor, state: Tensor,
                       prev_alpha: Tensor, n: int) -> tuple[Tensor, ...] | None:
        """The "binary" pass by ``zigzag.c`` (the state as the compiled pass writes it, bit for
        bit; the sums from counts, ``_binary_sums``), or None where it does not apply: float32
        levels, state and alphas (one per layer, so that every product is a float32 one, as
        ``_binary_sums`` rounds them), contiguous and on the CPU, a library built. It writes no
        update (the caller keeps the levels)."""
        tensors = (b0, b1, state)
        if not all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
                   and t.numel() == b1.numel() for t in tensors):
            return None
        alphas = (a0, a1, prev_alpha)
        if not all(a.numel() == 1 and a.dtype == torch.float32 and a.device.type == "cpu"
                   for a in alphas):
            return None
        lib = native.zigzag()[0]
        if lib is None:
            return None
        consts = self._native_consts.get(b1.dtype)
        if consts is None:
            consts = self._native_consts[b1.dtype] = [float(c) for c in self._constants(b1)]
        total = b1.numel()
        pieces = max(1, min(torch.get_num_threads(), total // _PIECE))
        bounds = [total * k // pieces for k in range(pieces + 1)]
        out = (ctypes.c_int64 * (4 * pieces))()
        base, size = ctypes.addressof(out), ctypes.sizeof(ctypes.c_int64)

        def run(k: int) -> None:
            start, count = bounds[k], bounds[k + 1] - bounds[k]
            lib.zz_binary(b0.data_ptr() + 4 * start, b1.data_ptr() + 4 * start,
                          state.data_ptr() + 4 * start, count, *consts, base + 4 * k * size)

        if pieces == 1:
            run(0)
        else:
            list(native.pool(pieces).map(run, range(pieces)))
        native.written(state)
        counts = [sum(out[4 * k + j] for k in range(pieces)) for j in range(4)]
        return _binary_sums(counts, total, float(a0), float(a1), float(prev_alpha), n)

    def _record(self, step: Tensor, alpha: Tensor, b: Tensor, w_first: Tensor | None) -> None:
        """Store this step in the bounded trace if it falls on the stride; decimate when full."""
        if self.iteration % self._stride:
            return
        length = len(self._trace_iters)
        if length == self.max_trace:
            keep = (length + 1) // 2
            self._trace[:keep] = self._trace[0:length:2].clone()
            self._traj[:keep] = self._traj[0:length:2].clone()
            self._trace[keep:] = float("nan")
            self._traj[keep:] = float("nan")
            self._trace_iters = self._trace_iters[::2]
            self._stride *= 2
            if self.iteration % self._stride:
                return
            length = keep
        idx = self._tracked
        self._trace[length] = step
        self._traj[length, 1] = b.reshape(-1)[idx] * alpha
        if w_first is not None:
            self._traj[length, 0] = w_first.reshape(-1)[idx]
        self._trace_iters.append(self.iteration + 1)

    def epoch_summary(self, reset: bool = True) -> dict[str, float]:
        """Means over the steps since the last reset (see the module docstring); syncs once."""
        if self._acc is None:
            return {key: float("nan") for key in SUMMARY_KEYS}
        if self._packed:
            total = sum(s.numel() for s in self._packed)
            threshold = torch.tensor(self.threshold, dtype=self._packed[0].dtype,
                                     device=self._packed[0].device)
            sums = [_freq_stats_fn()(*flat(s), threshold, self._event_scale) for s in self._packed]
            freq_sum = torch.stack([f for f, _ in sums]).sum()
            above = torch.stack([a for _, a in sums]).sum()
        else:
            total = sum(f.numel() for f in self._freqs)
            freq_sum = torch.stack([f.sum(dtype=torch.float64) for f in self._freqs]).sum()
            above = torch.stack([torch.count_nonzero(f > self.threshold) for f in self._freqs]).sum()
        values = torch.cat([self._acc, torch.stack([freq_sum, above.double()])]).tolist()
        acc, freq_sum, above = values[:7], values[7], values[8]
        if reset:
            self._acc.zero_()
        return {
            "zz_cosine": _ratio(acc[_COS_SUM], acc[_COS_N]),
            "zz_flip_rate": _ratio(acc[_FLIP_SUM], acc[_FLIP_N]),
            "zz_osc_freq": freq_sum / total,
            "zz_osc_share": above / total,
            "zz_osc_amplitude": _ratio(acc[_AMP_SUM], acc[_EVENTS]),
        }

    def pop_trace(self) -> dict[str, np.ndarray]:
        """The per-iteration trace since the last pop (bounded, see the module docstring); clears it."""
        length = len(self._trace_iters)
        k = 0 if self._traj is None else self._traj.shape[-1]
        out = {
            "iteration": np.asarray(self._trace_iters, dtype=np.int64),
            "cosine": np.empty(0, dtype=np.float32),
            "flip_rate": np.empty(0, dtype=np.float32),
            "osc_rate": np.empty(0, dtype=np.float32),
            "traj_w": np.empty((0, k), dtype=np.float32),
            "traj_w_hat": np.empty((0, k), dtype=np.float32),
        }
        if self._trace is not None:
            trace = self._trace[:length].to("cpu", copy=True).numpy()
            traj = self._traj[:length].to("cpu", copy=True).numpy()
            out.update(cosine=trace[:, 0], flip_rate=trace[:, 1], osc_rate=trace[:, 2],
                       traj_w=traj[:, 0], traj_w_hat=traj[:, 1])
            self._trace.fill_(float("nan"))
            self._traj.fill_(float("nan"))
        self._trace_iters = []
        self._stride = 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue measuring after a restart (tensors, ints, lists only)."""
        state: dict[str, Any] = {
            "iteration": self.iteration,
            "stride": self._stride,
            "trace_iters": list(self._trace_iters),
            "binary_chain": self._binary_chain,
        }
        if self._acc is not None:
            state.update(
                acc=self._acc, tracked=self._tracked, trace=self._trace, traj=self._traj,
                dir=list(self._dir), freq=list(self._freq),
            )
        if self._kept is not None:  # recomputed into fresh tensors: no copy to clone
            state.update(u_prev=[self._kept_update(i) for i in range(len(self._kept))],
                         norm2_prev=self._norm2_prev)
        elif self._u_prev is not None:
            state.update(u_prev=list(self._u_prev), norm2_prev=self._norm2_prev)
        return {key: _clone(value) for key, value in state.items()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str | None = None) -> None:
        """Restore a ``state_dict()``, placing its tensors on ``device`` (default: where they are)."""
        state = {key: _clone(value, device) for key, value in state.items()}
        self.iteration = state["iteration"]
        self._stride = state["stride"]
        self._trace_iters = list(state["trace_iters"])
        if "acc" in state:
            self._acc, self._tracked = state["acc"], state["tracked"]
            self._trace, self._traj = state["trace"], state["traj"]
            self._dirs, self._freqs = state["dir"], state["freq"]
        else:
            self._acc = None
            self._dirs, self._freqs = [], []
        self._packed = []
        self._u_next, self._scratch = [], []  # allocated at the next step, for its path
        self._kept = None
        self._binary_chain = bool(state.get("binary_chain", False)) if "acc" in state else False
        self._resumed = True
        self._u_prev = state.get("u_prev")
        self._norm2_prev = state.get("norm2_prev")


def _advance(state: Tensor, change: Tensor, momentum: Tensor, rest: Tensor, floor: Tensor,
             first: Tensor, scale: Tensor, inv_scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The packed state after a step whose level changes are ``change`` (b_new - b_old); also
    the direction before it, and where the step that wrote ``state`` changed a level when the
    levels are binary (its marks: an event or a first change)."""
    mag = state.abs()
    freq = torch.where(mag > _EVENT_MARK, mag * inv_scale, mag)
    direction = torch.where(state > 0, 1.0, torch.where(state < 0, -1.0, 0.0))
    event = change * direction < 0  # a level change against the previous one
    freq = freq * momentum + torch.where(event, rest, 0.0)
    kept_mag = torch.where(event, freq * scale, torch.maximum(freq, floor))
    mag_new = torch.where((change != 0) & (direction == 0), first, kept_mag)
    new = torch.where(change > 0, 1.0, torch.where(change < 0, -1.0, direction)) * mag_new
    changed = (mag > _EVENT_MARK) | ((mag > 0) & (mag < floor))
    return new, direction, changed


def _layer(a0: Tensor, b0: Tensor, a1: Tensor, b1: Tensor, state: Tensor,
           u_out: Tensor | None, prev_alpha: Tensor | None, prev_b: Tensor | None,
           u_prev: Tensor | None, momentum: Tensor, rest: Tensor, floor: Tensor, first: Tensor,
           scale: Tensor, inv_scale: Tensor, n: float) -> tuple[Tensor, ...]:
    """``ZigZagMeter.update``'s per-layer work on the packed state (compiled: one pass): the
    state updated in place, the update into ``u_out`` (unless None); the previous update is
    ``u_prev`` or recomputed as ``alpha_old * b_old - prev_alpha * prev_b`` (or there is none).
    With ``prev_alpha`` but no ``prev_b`` the levels are binary (+-1) and prev_b is read off
    the state: the previous step changed weight i's level exactly where the state it wrote is
    marked (an event, or a first change: for +-1 levels every later change is an event), and
    then by 2 in the state's direction. ``rest`` is 1 - momentum, ``floor`` 2^-100, ``first``
    2^-110, ``scale`` S (module docstring). Returns (norm2, events, amplitude sum) and, with a
    previous update, (dot, moved, flips); the counts as int32.

    The sums count the events by the mark of the state as written, not from the state before
    the step, which kept inductor from writing the state in the same loop in one formulation
    (the binary kind's u_prev does read the old marks, and its pass is still one loop: checked
    in the generated code with TORCH_LOGS=output_code)."""
    change = b1 - b0
    new, direction, changed = _advance(state, change, momentum, rest, floor, first, scale,
                                       inv_scale)
    if prev_alpha is not None and prev_b is None:  # binary levels: the previous change, marked
        prev_b = b0 - torch.where(changed, 2.0 * direction, 0.0).to(b0.dtype)
    state.copy_(new)
    marked = new.abs() > _EVENT_MARK
    u = b1 * a1 - b0 * a0
    if u_out is not None:
        u_out.copy_(u)
    sums = ((u * u).sum(), marked.sum(dtype=torch.int32),
            torch.where(marked, change.abs(), 0.0).sum() * n)
    if prev_b is not None:
        u_prev = b0 * a0 - prev_b * prev_alpha  # the previous step's u, as it computed it
    if u_prev is None:
        return sums
    # the eager path's counts (the sign of the product); each product written differently, as
    # one product with three users would be a buffer of its own, written and read in two loops
    moved = u_prev * u != 0
    flips = -u * u_prev > 0
    return (*sums, (u * u_prev).sum(), moved.sum(dtype=torch.int32), flips.sum(dtype=torch.int32))


def _binary_sums(counts: Sequence[int], total: int, a0: float, a1: float, prev_alpha: float,
                 n: int) -> tuple[Tensor, ...]:
    """``_layer``'s sums of the "binary" kind from ``zigzag.c``'s counts (changes in this step,
    in the step before, in both; events) over ``total`` weights with one alpha each step.

    With +-1 levels and one alpha per layer, u = b0 U and u_prev = b0 P where U and P take two
    values each: U = a1 - a0 for an unchanged level and -(a1 + a0) for a changed one, P = a0 -
    prev_alpha, or a0 + prev_alpha where the step before changed the level (each rounded to
    float32 as the compiled pass rounds it). So the four classes of weights give every sum:
    the counts of moved and flipped weights exactly as the pass counts them (the sign of each
    float32 product), norm2 and the dot product without the rounding of a float32 sum over the
    layer (they differ from the pass's in the last bits), the amplitude sum (each event of +-1
    levels jumps by 2) as the pass computes it (up to 2^23 events a layer; exact beyond, where
    the pass's float32 sum of 2s rounds)."""
    changed, before, both, events = counts
    f32 = np.float32
    a0_, a1_, pa_ = f32(a0), f32(a1), f32(prev_alpha)
    u = (a1_ - a0_, -(a1_ + a0_))  # u / b0: level unchanged, changed in this step
    p = (a0_ - pa_, a0_ + pa_)  # u_prev / b0: unchanged, changed in the step before
    classes = {(0, 0): total - changed - before + both, (1, 0): changed - both,
               (0, 1): before - both, (1, 1): both}
    norm2 = (total - changed) * float(u[0]) ** 2 + changed * float(u[1]) ** 2
    dot = sum(k * float(u[c]) * float(p[c_prev]) for (c, c_prev), k in classes.items())
    moved = sum(k for (c, c_prev), k in classes.items() if u[c] * p[c_prev] != 0)
    flips = sum(k for (c, c_prev), k in classes.items() if -u[c] * p[c_prev] > 0)
    amp = f32(2 * events) * f32(n)

    def t(value: float, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.tensor(value, dtype=dtype)

    return (t(norm2), t(events, torch.int32), t(float(amp)), t(dot),
            t(moved, torch.int32), t(flips, torch.int32))


@functools.cache
def _layer_fn(kind: str, store: bool):
    """The compiled ``_layer`` for one kind of previous update ("first": none, "kept":
    recomputed from the kept levels, "binary": from the kept alpha and the state's marks,
    "stored") and whether it writes the update: a code object each (see fused.compile_variant)."""
    return compile_variant(_layer, kind, store)


def _freq_stats(state: Tensor, threshold: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """The sum of the packed state's frequencies (float64) and how many exceed the threshold."""
    freq = _unpack_freq(state, scale)
    return freq.sum(dtype=torch.float64), (freq > threshold).sum()


@functools.cache
def _freq_stats_fn():
    return compile_variant(_freq_stats)


def _pack(direction: Tensor, freq: Tensor) -> Tensor:
    """The packed state of the module docstring from direction and frequency."""
    return direction * freq.clamp(min=_FLOOR)


def _unpack_freq(state: Tensor, scale: float) -> Tensor:
    mag = state.abs()
    return torch.where(mag > _EVENT_MARK, mag / scale, torch.where(mag > _FLOOR, mag, 0.0))


def _empty(x: Tensor) -> Tensor:
    """A contiguous buffer shaped like x (so that flat views work for any memory format)."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _scratch(x: Tensor) -> tuple[Tensor, Tensor]:
    """Two buffers shaped like x, reused every step (no allocation per step)."""
    return _empty(x), _empty(x)


def _add(total: Tensor | None, value: Tensor) -> Tensor:
    return value if total is None else total + value


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _clone(value: Any, device: torch.device | str | None = None) -> Any:
    if isinstance(value, Tensor):
        return value.detach().to(device, copy=True) if device is not None else value.detach().clone()
    if isinstance(value, list):
        return [_clone(v, device) for v in value]
    return value
