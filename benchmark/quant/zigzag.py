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
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.errors import UserError
from benchmark.quant.fused import compile_variant, flat

MAX_TRACE = 5000  # iterations a trace keeps at most (decimated evenly beyond)
SUMMARY_KEYS = ("zz_cosine", "zz_flip_rate", "zz_osc_freq", "zz_osc_share", "zz_osc_amplitude")

# slots of the per-epoch accumulator
_COS_SUM, _COS_N, _FLIP_SUM, _FLIP_N, _EVENTS, _AMP_SUM, _STEPS = range(7)


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
        default within float rounding: the sums run in another order)."""
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
        self.iteration = 0  # steps observed so far
        self._u_prev: list[Tensor] | None = None
        self._u_next: list[Tensor] = []  # scratch buffers: this step's update is written here
        self._scratch: list[tuple[Tensor, Tensor]] = []
        self._dir: list[Tensor] = []  # sign of each weight's last level change (0: none yet)
        self._freq: list[Tensor] = []
        self._norm2_prev: Tensor | None = None
        self._acc: Tensor | None = None
        self._tracked: Tensor | None = None
        self._stride = 1
        self._trace_iters: list[int] = []
        self._trace: Tensor | None = None  # (max_trace, 3): cosine, flip rate, oscillation rate
        self._traj: Tensor | None = None  # (max_trace, 2, K): w and w_hat at tracked coordinates

    def _setup(self, b: Sequence[Tensor]) -> None:
        dev = b[0].device
        self._u_next = [_empty(x) for x in b]
        self._scratch = [_scratch(x) for x in b]
        self._dir = [_empty(x).zero_() for x in b]
        self._freq = [_empty(x).zero_() for x in b]
        self._acc = torch.zeros(7, dtype=torch.float64, device=dev)
        numel = b[0].numel()
        k = min(self.n_tracked, numel)
        self._tracked = torch.linspace(0, numel - 1, k, device=dev).round().long()
        self._trace = torch.full((self.max_trace, 3), float("nan"), device=dev)
        self._traj = torch.full((self.max_trace, 2, k), float("nan"), device=dev)

    @torch.no_grad()
    def update(
        self,
        alpha_old: Sequence[Tensor],
        b_old: Sequence[Tensor],
        alpha_new: Sequence[Tensor],
        b_new: Sequence[Tensor],
        level_steps: Sequence[int],
        w_first: Tensor | None = None,
    ) -> None:
        """Record one step in which layer l's w_hat went from alpha_old[l]*b_old[l] to alpha_new[l]*b_new[l].

        ``level_steps[l]`` is n of layer l (its level spacing is alpha/n); ``w_first`` is the
        full-precision weight of the first layer after the step (for the trajectories).
        """
        if self._acc is None:
            self._setup(b_new)
        total = sum(x.numel() for x in b_new)
        dot = norm2 = flips = both = events = amp = None
        for i, (a0, b0, a1, b1, n) in enumerate(
            zip(alpha_old, b_old, alpha_new, b_new, level_steps, strict=True)
        ):
            u, (s1, s2) = self._u_next[i], self._scratch[i]
            if self.compile:
                prev = None if self._u_prev is None else self._u_prev[i]
                fb0, fb1, fprev, fu, fdir, ffreq = flat(b0, b1, prev, u, self._dir[i], self._freq[i])
                sums = _layer_fn(prev is not None)(
                    a0, fb0, a1, fb1, fprev, fu, fdir, ffreq, self.momentum, float(n))
                norm2, dot, both, flips = (_add(norm2, sums[0]), *(
                    (None, None, None) if prev is None else
                    (_add(dot, sums[1]), _add(both, sums[2]), _add(flips, sums[3]))))
                events, amp = _add(events, sums[4]), _add(amp, sums[5])
                continue
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
            direction = self._dir[i]
            torch.sign(change, out=s2)
            against = change.mul_(direction).clamp_(max=0)  # -|change| at events, 0 elsewhere
            amp = _add(amp, against.sum() * -n)
            against.sign_()  # -1 at events
            events = _add(events, -against.sum())
            self._freq[i].mul_(self.momentum).sub_(against, alpha=1.0 - self.momentum)
            direction.add_(s2, alpha=2).sign_()  # the new change where there is one
        if self._u_prev is None:
            self._u_prev = [_empty(x) for x in b_new]
        self._u_prev, self._u_next = self._u_next, self._u_prev  # swap: no copy
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
        total = sum(f.numel() for f in self._freq)
        freq_sum = torch.stack([f.sum(dtype=torch.float64) for f in self._freq]).sum()
        above = torch.stack([torch.count_nonzero(f > self.threshold) for f in self._freq]).sum()
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
        }
        if self._acc is not None:
            state.update(
                acc=self._acc, tracked=self._tracked, trace=self._trace, traj=self._traj,
                dir=list(self._dir), freq=list(self._freq),
            )
        if self._u_prev is not None:
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
            self._dir, self._freq = state["dir"], state["freq"]
            self._u_next = [_empty(x) for x in self._dir]
            self._scratch = [_scratch(x) for x in self._dir]
        else:
            self._acc = None
        self._u_prev = state.get("u_prev")
        self._norm2_prev = state.get("norm2_prev")


def _layer(a0: Tensor, b0: Tensor, a1: Tensor, b1: Tensor, u_prev: Tensor | None, u: Tensor,
           direction: Tensor, freq: Tensor, momentum: float, n: float) -> tuple[Tensor, ...]:
    """``ZigZagMeter.update``'s per-layer work as one function (compiled: one pass); returns
    (norm2, dot, moved, flips, events, amplitude sum), the middle three 0 without u_prev."""
    u_new = b1 * a1 - b0 * a0
    norm2 = (u_new * u_new).sum()
    zero = norm2 * 0
    dot = moved = flips = zero
    if u_prev is not None:
        prod = u_new * u_prev
        dot = prod.sum()
        agree = torch.sign(prod)
        moved = (agree * agree).sum()
        flips = (moved - agree.sum()) / 2
    change = b1 - b0
    against = torch.clamp(change * direction, max=0)
    events_mask = torch.sign(against)  # -1 at events
    u.copy_(u_new)
    freq.copy_(freq * momentum - events_mask * (1.0 - momentum))
    direction.copy_(torch.sign(direction + 2 * torch.sign(change)))
    return norm2, dot, moved, flips, -events_mask.sum(), against.sum() * -n


@functools.cache
def _layer_fn(has_prev: bool):
    """The compiled ``_layer``, one per value of has_prev (a code object each: see fused.compile_variant)."""
    return compile_variant(_layer, has_prev)


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
