"""The loss-aware quantized training step (LAB/LAQ) and BLAQ's look-ahead/backtrack step.

Both optimizers take a model, quantize every ``nn.Linear`` and ``nn.Conv2d`` weight (unless the
first or last such layer is excluded) and keep the full-precision weights in their own state:
the model's parameters always hold the quantized weights ``w_hat = alpha * b`` that the forward
pass sees. Everything else (batch-norm parameters, biases) takes a plain Adam step. docs/spec.md sections
2 and 3 give the math; the docstrings below name the choices we made where the sources are silent.

The curvature is kept as ``D = sqrt(v) + eps * sqrt(1 - beta2^t)``, which is ``d_t`` times the
scalar ``lr * sqrt(1 - beta2^t)``; the step folds that scalar into its step size (as torch's
capturable Adam does) and the quantizer gets D itself: every scheme's minimiser is unchanged by a
positive factor on d, and this saves passes over the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from benchmark.errors import UserError
from benchmark.quant import fused, fused_lat
from benchmark.quant.quantizers import Scheme, Workspace, get_scheme
from benchmark.quant.zigzag import ZigZagMeter

BLENDS = ("moment", "gradient")
KEEP_MOMENTS = ("blended", "current")


def check_blaq_options(a: Any, m: Any, blend: Any, keep_moments: Any) -> tuple[float, int, str, str]:
    """BLAQ's four settings, checked (the one place: the optimizer and the run config both call
    it); returns them with ``a`` as a float. UserError with a one-line reason for each."""
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
        raise UserError(f"a (the BLAQ blend) must lie in [0, 1], not {a!r}")
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise UserError(f"m (the BLAQ period in epochs) must be a positive integer, not {m!r}")
    if blend not in BLENDS:
        raise UserError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
    if keep_moments not in KEEP_MOMENTS:
        raise UserError(f"keep_moments must be one of {', '.join(KEEP_MOMENTS)}, not {keep_moments!r}")
    return float(a), m, blend, keep_moments


def check_speed_options(rounds: Any, compile: Any) -> tuple[int | None, bool]:
    """The optimizers' speed options, checked (the one place: the optimizers and the run config
    both call it); returns them with ``compile`` as a bool. UserError with a one-line reason."""
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise UserError(f"rounds (the alternation cap per step) must be a positive integer or None, not {rounds!r}")
    if compile not in (True, False):
        raise UserError(f"compile must be True or False, not {compile!r}")
    return rounds, bool(compile)


def quantizable_weights(
    model: nn.Module, quantize_first: bool = True, quantize_last: bool = True
) -> list[nn.Parameter]:
    """The weights of the model's Linear and Conv2d layers, in module order, minus excluded ends."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    first, last = 0, len(layers)
    if not quantize_first:
        first += 1
    if not quantize_last:
        last -= 1
    weights: list[nn.Parameter] = []
    for layer in layers[first:last]:
        w = layer.weight
        if w.requires_grad and all(w is not q for q in weights):
            weights.append(w)
    return weights


class LossAwareAdam(torch.optim.Optimizer):
    """LAB/LAQ: an Adam step on the full-precision weights, then the loss-aware quantizer.

    Per quantized weight (docs/spec.md section 2): Adam moments m, v from the gradient at w_hat, curvature
    ``d = (eps + sqrt(v_hat)) / lr``, ``w <- clip(w - m_hat / d, -1, 1)``, ``w_hat = Q(w; d)``
    with the previous levels as the warm start. ``zigzag=True`` (or a ``ZigZagMeter``) measures
    every step. ``set_epoch`` only records the epoch here; BLAQ acts on it.

    Speed options (the defaults give the spec's results bit for bit): ``rounds`` caps the
    alternation rounds of the iterative schemes per step (None: the spec's "at most 10 rounds or
    alpha change below 1e-6"; the previous levels stay the warm start, so a small cap carries the
    convergence across steps); ``sync_free`` (None: on when the weights are not on the CPU) makes
    every step free of host reads of device values, so that a GPU step never waits for the
    device. After the first step a step allocates no tensor of a weight's size: the scratch
    tensors and the quantizer's workspaces are kept per layer. ``compile=True`` runs the step
    through ``torch.compile``d kernels (``benchmark.quant.fused``: the update, the closed-form
    and iterative quantizers and the zig-zag meter fused into a few passes over the weights;
    lat-exact, reading on the host, in ``benchmark.quant.fused_lat``: a window around the last
    threshold, proved optimal, else the eager method; sync-free lat-exact and schemes
    registered without a fused kernel keep their eager quantizer): the
    results equal the default's within float rounding, not bit for bit; the first step compiles
    (seconds per weight shape, then cached on disk).
    """

    def __init__(
        self,
        model: nn.Module,
        scheme: str | Scheme = "lab",
        bits: int = 1,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        quantize_first: bool = True,
        quantize_last: bool = True,
        zigzag: bool | ZigZagMeter = False,
        rounds: int | None = None,
        sync_free: bool | None = None,
        compile: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"pass the model (an nn.Module), not {type(model).__name__}")
        if not lr > 0:
            raise UserError(f"learning rate must be positive, not {lr}")
        if not eps > 0:
            raise UserError(f"eps must be positive (the curvature must stay > 0), not {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise UserError(f"betas must be two numbers in [0, 1), not {betas}")
        rounds, compile = check_speed_options(rounds, compile)
        if sync_free not in (None, True, False):
            raise UserError(f"sync_free must be True, False or None (automatic), not {sync_free!r}")
        self._scheme = get_scheme(scheme)
        self._scheme.check_bits(bits)
        self.bits = bits
        self.rounds = rounds
        self.sync_free = sync_free
        quantized = quantizable_weights(model, quantize_first, quantize_last)
        if not quantized:
            raise UserError(
                "the model has no Linear or Conv2d weight left to quantize; "
                "check quantize_first/quantize_last or use torch.optim.Adam"
            )
        odd = sorted({str(p.dtype) for p in quantized} - {"torch.float32", "torch.float64"})
        if odd:
            raise UserError(
                f"quantized layers must be float32 or float64 (the full-precision weights live in "
                f"their dtype), not {', '.join(odd)}; convert the model with .float()"
            )
        qids = {id(p) for p in quantized}
        seen: set[int] = set()
        others = []
        for p in model.parameters():
            if p.requires_grad and id(p) not in qids and id(p) not in seen:
                seen.add(id(p))
                others.append(p)
        groups: list[dict[str, Any]] = [
            {"params": quantized, "quantized": True, "scheme": self._scheme.name, "bits": bits}
        ]
        if others:
            groups.append({"params": others, "quantized": False})
        super().__init__(groups, {"lr": lr, "betas": tuple(betas), "eps": eps})
        self.epoch = 0
        self.compile = bool(compile)
        if compile:
            reason = fused.available(quantized[0].device)
            if reason is not None:
                raise UserError(f"compile=True is not available here: {reason}")
        if zigzag is True:
            self.zigzag: ZigZagMeter | None = ZigZagMeter(compile=self.compile)
        elif isinstance(zigzag, ZigZagMeter):
            self.zigzag = zigzag
        elif zigzag is False or zigzag is None:
            self.zigzag = None
        else:
            raise UserError(f"zigzag must be True, False or a ZigZagMeter, not {zigzag!r}")
        self._level_steps = self._scheme.step_count(bits)
        self._batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self._scratch: dict[int, dict[str, Tensor]] = {}
        self._workspaces: dict[int, Workspace] = {}
        self._scalars: dict[tuple, Tensor] = {}
        self._lat_windows: dict[tuple[int, bool], fused_lat.Window] = {}  # compiled LAT exact, per layer
        self._saved_stats: list[tuple[Tensor, Tensor]] | None = None
        self._others_denom: list[Tensor] | None = None
        with torch.no_grad():
            for p in quantized:
                w = p.detach().clamp(-1.0, 1.0)
                alpha, b = self._quantize(p, w, None, None)
                self.state[p] = {
                    "step": 0,
                    "w": w,
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "alpha": alpha,
                    "b": b,
                }
                torch.mul(b, alpha, out=p)

    # --- public helpers -------------------------------------------------------------------

    @property
    def scheme(self) -> Scheme:
        """The quantizer scheme of every quantized layer."""
        return self._scheme

    def quantized_params(self) -> list[nn.Parameter]:
        """The quantized parameters, in model order (they hold w_hat; w is in the state)."""
        return list(self._group(quantized=True)["params"])

    def full_precision(self, p: nn.Parameter) -> Tensor:
        """The full-precision weight w behind the quantized parameter ``p``."""
        return self.state[p]["w"]

    def set_epoch(self, epoch: int) -> None:
        """Record the 0-based epoch about to start (BLAQ decides from it which step to take)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise UserError(f"epoch must be a non-negative integer, not {epoch!r}")
        self.epoch = epoch

    # --- the step --------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One LAB/LAQ step; ``closure`` (optional) re-evaluates the loss and its gradients."""
        return self._laq_step(closure)

    def _first_pass(
        self, closure: Callable[[], Tensor] | None
    ) -> tuple[Tensor | None, list[Tensor], dict[str, Any]]:
        """Evaluate the closure (if any) and step the non-quantized parameters; returns the loss,
        the quantized parameters that have a gradient, and their group."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._adam_others()
        group = self._group(quantized=True)
        return loss, [p for p in group["params"] if p.grad is not None], group

    def _laq_step(self, closure: Callable[[], Tensor] | None) -> Tensor | None:
        loss, params, group = self._first_pass(closure)
        if not params:
            return loss
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        old = self._levels()
        for p in params:
            st = self.state[p]
            st["step"] += 1
            bc1, bc2_sqrt = _bias_corrections(beta1, beta2, st["step"])
            m, v, w = st["exp_avg"], st["exp_avg_sq"], st["w"]
            if self.compile:
                self._fused_step(p, beta1, beta2, -(lr * bc2_sqrt / bc1), eps * bc2_sqrt)
                continue
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            d = torch.sqrt(v, out=self._buffer(p, "d1")).add_(eps * bc2_sqrt)  # D_t
            w.addcdiv_(m, d, value=-(lr * bc2_sqrt / bc1)).clamp_(-1.0, 1.0)
            self._requantize(p, d)
        self._measure(old)
        return loss

    def _fused_step(self, p: Tensor, beta1: float, beta2: float, step: float, eps_c: float) -> None:
        """The compiled LAQ step of one layer (``compile=True``): the update and the quantizer
        in as few passes as the scheme allows."""
        st, name = self.state[p], self._scheme.name
        g, m, v, w = p.grad, st["exp_avg"], st["exp_avg_sq"], st["w"]
        d, q = self._buffer(p, "d1"), p.detach()  # q: the parameter as a plain tensor
        step, eps_c = self._scalar(p, "step", step), self._scalar(p, "eps", eps_c)
        if name in fused.CLOSED_FORM:
            b = self._spare_levels(p)
            has_d = self._scheme.loss_aware
            fg, fm, fv, fw, fb, fq = fused.flat(g, m, v, w, b, q)
            st["alpha"] = fused.closed_step_fn(name, has_d)(
                fg, fm, fv, fw, None, fb, fq, beta1, beta2, step, eps_c)
            if name != "twn":
                fused.write_signs_fn()(fw, st["alpha"], fb, fq)
            st["b"] = b
        elif name in fused.ITERATIVE:
            b = self._spare_levels(p)
            st["alpha"] = fused.alternate(
                name, self.bits, w, d, st["b"], b, q, self._rounds(), self._sync_free(p),
                update=(g, m, v, beta1, beta2, step, eps_c))
            st["b"] = b
        elif name == "lat-exact" and self._lat_windowed(p, g, m, v, w, d, q):
            b = self._spare_levels(p)
            st["alpha"] = fused_lat.laq_step(self._lat_window(p), g, m, v, w, d, b, q,
                                             beta1, beta2, step, eps_c)
            st["b"] = b
        else:
            fused.update_fn()(*fused.flat(g, m, v, w, d), beta1, beta2, step, eps_c)
            self._requantize(p, d)

    def _lat_windowed(self, p: Tensor, *tensors: Tensor) -> bool:
        """Whether LAT exact takes the compiled windowed path (fused_lat): host reads allowed."""
        return not self._sync_free(p) and fused_lat.usable(*tensors)

    def _lat_window(self, p: Tensor, trial: bool = False) -> fused_lat.Window:
        """The layer's window (BLAQ's trial points keep their own: their threshold follows
        another trend than the steps')."""
        key = (id(p), trial)
        win = self._lat_windows.get(key)
        if win is None:
            win = self._lat_windows[key] = fused_lat.Window()
        return win

    def _scalar(self, p: Tensor, name: str, value: float) -> Tensor:
        """``value`` in a kept 0-dim tensor on p's device (the compiled kernels take the scalars
        that change every step as tensors: as Python floats dynamo may specialize on them and
        recompile; filling a kept tensor never waits for the device)."""
        key = (name, p.device, p.dtype)
        t = self._scalars.get(key)
        if t is None:
            t = self._scalars[key] = torch.empty((), dtype=p.dtype, device=p.device)
        return t.fill_(value)

    def _rounds(self) -> int:
        return 10 if self.rounds is None else self.rounds

    def _sync_free(self, p: Tensor) -> bool:
        return p.device.type != "cpu" if self.sync_free is None else self.sync_free

    def _spare_levels(self, p: Tensor) -> Tensor:
        """A levels buffer that is neither the layer's current levels nor the levels before them
        while the zig-zag meter still reads those (see ``_levels``): two buffers per layer, a
        third with the meter."""
        avoid = (self.state[p]["b"], self._scratch.get(id(p), {}).get("levels held"))
        for name in ("levels0", "levels1", "levels2"):
            buf = self._buffer(p, name)
            if all(buf is not x for x in avoid):
                return buf
        raise AssertionError("three level buffers, at most two in use")  # unreachable

    # --- building blocks shared with BLAQ ---------------------------------------------------

    def _group(self, quantized: bool) -> dict[str, Any]:
        for group in self.param_groups:
            if group["quantized"] == quantized:
                return group
        return {"params": []}

    def _buffer(self, p: Tensor, name: str) -> Tensor:
        """A scratch tensor shaped like ``p`` (kept across steps: no allocation per step)."""
        bufs = self._scratch.setdefault(id(p), {})
        buf = bufs.get(name)
        if buf is None:
            buf = bufs[name] = torch.empty_like(p, memory_format=torch.preserve_format)
        return buf

    def _quantize(
        self, p: Tensor, w: Tensor, d: Tensor | None, init: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Call the scheme's solver directly (inputs are valid by construction, so skip the
        checks), in the layer's workspace when the scheme has a ``solve_into``."""
        sch = self._scheme
        d = d if sch.loss_aware else None
        if sch.solve_into is None:
            return sch.solve(w, d, self.bits, init)
        ws = self._workspaces.get(id(p))
        if ws is None:
            ws = self._workspaces[id(p)] = Workspace()
        return sch.solve_into(w, d, self.bits, init, ws, rounds=self.rounds, sync_free=self.sync_free)

    def _requantize(self, p: Tensor, d: Tensor, w: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """w_hat = Q(w; d) with the previous levels as warm start, written into the parameter;
        ``w`` (default: the layer's full-precision weight) is the weight to quantize, and the
        state keeps the result only for that default. Returns (alpha, b)."""
        st = self.state[p]
        keep = w is None
        w = st["w"] if w is None else w
        name = self._scheme.name
        if self.compile and (name in fused.CLOSED_FORM or name in fused.ITERATIVE):
            b = self._spare_levels(p)
            q = p.detach()  # the parameter as a plain tensor
            if name in fused.CLOSED_FORM:
                has_d = self._scheme.loss_aware
                alpha = fused.closed_quantize_fn(name, has_d)(
                    *fused.flat(w, d if has_d else None, b, q))
            else:
                alpha = fused.alternate(name, self.bits, w, d, st["b"], b, q, self._rounds(),
                                        self._sync_free(p))
        elif self.compile and name == "lat-exact" and self._lat_windowed(p, w, d, p):
            b = self._spare_levels(p)
            alpha = fused_lat.quantize(self._lat_window(p, trial=not keep), w, d, b, p.detach())
        else:
            alpha, b = self._quantize(p, w, d, st["b"])
            torch.mul(b, alpha, out=p)
        if keep:
            st["alpha"], st["b"] = alpha, b
        return alpha, b

    def _levels(self) -> list[tuple[Tensor, Tensor]] | None:
        """(alpha, b) of every quantized layer before the step, when a meter is attached.

        Also records them per layer, and the previous step's ones as "levels held": the meter
        may read those again in this step (``_measure`` promises it that the levels it is handed
        stay unchanged until the next step), so ``_spare_levels`` writes elsewhere."""
        if self.zigzag is None:
            return None
        old = []
        for p in self.quantized_params():
            st, bufs = self.state[p], self._scratch.setdefault(id(p), {})
            bufs["levels held"] = bufs.get("levels before")
            bufs["levels before"] = st["b"]
            old.append((st["alpha"], st["b"]))
        return old

    def _measure(self, old: list[tuple[Tensor, Tensor]] | None) -> None:
        """Hand the meter the step all quantized layers took (a layer without a gradient: none)."""
        if self.zigzag is None or old is None:
            return
        params = self.quantized_params()
        kept = self._levels_kept()
        self.zigzag.update(
            [a for a, _ in old], [b for _, b in old],
            [self.state[p]["alpha"] for p in params], [self.state[p]["b"] for p in params],
            [self._level_steps] * len(params), self.state[params[0]]["w"],
            levels_kept=kept, levels_binary=kept and self._scheme.name in fused.BINARY,
        )

    def _levels_kept(self) -> bool:
        """Whether the next step leaves this step's levels alone (every level write of a
        compiled step goes to ``_spare_levels``; the eager quantizers write their workspaces)."""
        name = self._scheme.name
        return self.compile and (name in fused.CLOSED_FORM or name in fused.ITERATIVE)

    def _adam_others(self) -> None:
        """A plain Adam step (as torch.optim.Adam computes it) for every non-quantized parameter."""
        group = self._group(quantized=False)
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads, ms, vs, step_sizes, bc2_sqrts = [], [], [], [], []
        for p in params:
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["step"] += 1
            bc1, bc2_sqrt = _bias_corrections(beta1, beta2, st["step"])
            grads.append(p.grad)
            ms.append(st["exp_avg"])
            vs.append(st["exp_avg_sq"])
            step_sizes.append(-(lr / bc1))
            bc2_sqrts.append(bc2_sqrt)
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
        denom = self._others_denom
        if denom is None or len(denom) != len(vs) or any(
            x.shape != v.shape for x, v in zip(denom, vs, strict=True)
        ):  # kept across steps: the set of parameters with a gradient rarely changes
            denom = self._others_denom = [torch.empty_like(v) for v in vs]
        torch._foreach_copy_(denom, vs)
        torch._foreach_sqrt_(denom)
        torch._foreach_div_(denom, bc2_sqrts)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, ms, denom, step_sizes)

    # --- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Full-precision weights, moments, levels, step counts, epoch (and the zig-zag meter)."""
        state = super().state_dict()
        state["epoch"] = self.epoch
        if self.zigzag is not None:
            state["zigzag"] = self.zigzag.state_dict()
        if self._lat_windows:  # compiled LAT exact: by the layer's place among the quantized
            where = {id(p): i for i, p in enumerate(self.quantized_params())}
            state["lat_windows"] = [[where[key[0]], key[1], win.state()]
                                    for key, win in self._lat_windows.items() if key[0] in where]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` and write its quantized weights into the model's parameters."""
        state_dict = dict(state_dict)
        epoch = state_dict.pop("epoch", 0)
        meter = state_dict.pop("zigzag", None)
        windows = state_dict.pop("lat_windows", [])
        for saved in state_dict.get("param_groups", []):
            if saved.get("quantized") and (saved.get("scheme"), saved.get("bits")) != (
                self._scheme.name, self.bits
            ):
                raise UserError(
                    f"the checkpoint was saved with scheme {saved.get('scheme')!r} at "
                    f"{saved.get('bits')} bits; build the optimizer with the same scheme and bits"
                )
        super().load_state_dict(state_dict)
        self.epoch = epoch
        self._scratch.clear()
        self._workspaces.clear()
        self._lat_windows.clear()
        quantized = self.quantized_params()
        for index, trial, kept in windows:
            self._lat_window(quantized[index], trial=bool(trial)).load(kept)
        params = self.quantized_params()
        if self.zigzag is not None and meter is not None:
            self.zigzag.load_state_dict(meter, device=params[0].device)
        with torch.no_grad():
            for p in params:
                torch.mul(self.state[p]["b"], self.state[p]["alpha"], out=p)


class BLAQ(LossAwareAdam):
    """BLAQ: in every m-th epoch, one step forward to a trial point, then back from w_t (docs/spec.md section 3).

    Active in epoch e (0-based, see ``set_epoch``) when ``(e + 1) % m == 0``; otherwise the step
    is exactly LossAwareAdam's. An active step calls ``closure`` twice on the same batch: at w_hat_t
    (the loss it returns, and the gradient that gives the non-quantized parameters their one Adam
    step and the moments m_t, v_t), then at the trial point ``w_hat* = Q(clip(w_t - m_hat_t/d_t))``,
    whose gradient g* continues the moments to m*, v* (bias-corrected as step t+1). Batch-norm
    running statistics are restored after the trial pass. Then, from w_t,

    - ``blend="moment"`` (default, our reading of the paper): ``g = a m_hat_t + (1-a) m_hat*``,
      ``d = a d_t + (1-a) d*``, ``w_{t+1} = clip(w_t - g / d)``, ``w_hat_{t+1} = Q(w_{t+1}; d)``;
      ``keep_moments="blended"`` (default) keeps ``m = a m_t + (1-a) m*`` and ``v`` likewise,
      ``"current"`` keeps m_t, v_t;
    - ``blend="gradient"``: the raw gradients are blended, ``g = a g_t + (1-a) g*``, and the step is
      the plain LAQ step taken with g in place of g_t: m, v updated from m_{t-1}, v_{t-1} with g,
      ``d = (eps + sqrt(v_hat)) / lr``, ``w_{t+1} = clip(w_t - m_hat / d)``, ``Q(w_{t+1}; d)``;
      ``keep_moments="blended"`` keeps those m, v, ``"current"`` keeps m_t, v_t (from g_t alone).

    With ``a = 1`` every choice reduces to the LAQ step, bit for bit.
    """

    def __init__(
        self,
        model: nn.Module,
        scheme: str | Scheme = "lab",
        bits: int = 1,
        lr: float = 1e-3,
        a: float = 0.6,
        m: int = 5,
        blend: str = "moment",
        keep_moments: str = "blended",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        quantize_first: bool = True,
        quantize_last: bool = True,
        zigzag: bool | ZigZagMeter = False,
        rounds: int | None = None,
        sync_free: bool | None = None,
        compile: bool = False,
    ) -> None:
        a, m, blend, keep_moments = check_blaq_options(a, m, blend, keep_moments)
        super().__init__(model, scheme, bits, lr, betas, eps, quantize_first, quantize_last, zigzag,
                         rounds, sync_free, compile)
        self.a = a
        self.m = m
        self.blend = blend
        self.keep_moments = keep_moments

    @property
    def blaq_active(self) -> bool:
        """Whether the current epoch takes two-stage steps."""
        return (self.epoch + 1) % self.m == 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """A LAQ step, or in an active epoch the look-ahead/backtrack step; returns the first loss."""
        if not self.blaq_active:
            return self._laq_step(closure)
        if closure is None:
            raise UserError(
                "BLAQ needs a closure in its active epochs (it evaluates the batch twice): "
                "call opt.step(closure) with a closure that zeroes grads, runs backward, returns the loss"
            )
        loss, params, group = self._first_pass(closure)
        if not params:
            return loss
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        old = self._levels()
        first_grads = [p.grad for p in params]
        # forward (trial) stage. The moment blend continues from m_t, v_t only, so they are
        # updated in place in the state; the gradient blend restarts from m_{t-1}, v_{t-1}, so it
        # builds m_t, v_t in buffers. In-place updates are the cheap ones (memory-bound passes).
        for p, g in zip(params, first_grads, strict=True):
            st = self.state[p]
            st["step"] += 1
            bc1, bc2_sqrt = _bias_corrections(beta1, beta2, st["step"])
            m, v = st["exp_avg"], st["exp_avg_sq"]
            if self.compile and self.blend == "moment":
                d, trial = self._buffer(p, "d1"), self._buffer(p, "trial")
                scalars = (beta1, beta2, self._scalar(p, "step", -(lr * bc2_sqrt / bc1)),
                           self._scalar(p, "eps", eps * bc2_sqrt))
                if self._scheme.name == "lat-exact" and self._lat_windowed(p, g, m, v, d, trial):
                    fused_lat.trial(self._lat_window(p, trial=True), g, m, v, st["w"], d, trial, *scalars)
                else:
                    fused.trial_fn()(*fused.flat(g, m, v, st["w"], d, trial), *scalars)
                self._requantize(p, d, trial)
                continue
            if self.blend == "gradient":
                m = torch.lerp(m, g, 1 - beta1, out=self._buffer(p, "m1"))
                v = torch.mul(v, beta2, out=self._buffer(p, "v1"))
            else:
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2)
            v.addcmul_(g, g, value=1 - beta2)
            d = torch.sqrt(v, out=self._buffer(p, "d1")).add_(eps * bc2_sqrt)  # D_t
            trial = self._buffer(p, "trial")
            torch.addcdiv(st["w"], m, d, value=-(lr * bc2_sqrt / bc1), out=trial).clamp_(-1, 1)
            self._requantize(p, d, trial)
        if self.blend == "moment":
            first_grads = [None] * len(params)  # folded into m_t, v_t: let the memory go
        self.zero_grad(set_to_none=True)  # the first-pass gradients now belong to us alone
        with self._frozen_running_stats(), torch.enable_grad():
            closure()
        # backtrack stage, from w_t
        for p, g in zip(params, first_grads, strict=True):
            if p.grad is None:
                raise UserError(
                    "the closure's second (trial) pass gave no gradient for a quantized weight; "
                    "the closure must run loss.backward() every time it is called"
                )
            if self.blend == "moment":
                d = self._backtrack_moment(p, p.grad, lr, beta1, beta2, eps)
            else:
                d = self._backtrack_gradient(p, g, p.grad, lr, beta1, beta2, eps)
            self._requantize(p, d)
        self._measure(old)
        return loss

    @contextmanager
    def _frozen_running_stats(self) -> Iterator[None]:
        """Restore every buffer of the model's batch-norm modules on exit (the trial pass is a
        look-ahead); the copies are kept from step to step."""
        bufs = [buf for module in self._batchnorms for buf in module.buffers(recurse=False)]
        saved = self._saved_stats
        if saved is None or len(saved) != len(bufs) or any(
            b is not s[0] or b.shape != s[1].shape for b, s in zip(bufs, saved, strict=True)
        ):
            saved = self._saved_stats = [(b, torch.empty_like(b)) for b in bufs]
        for buf, copy in saved:
            copy.copy_(buf)
        try:
            yield
        finally:
            for buf, copy in saved:
                buf.copy_(copy)

    def _backtrack_moment(
        self, p: Tensor, g_trial: Tensor, lr: float, beta1: float, beta2: float, eps: float
    ) -> Tensor:
        """Blend the bias-corrected first moments and the curvatures; returns D_comb (prop. to d_comb).

        With ``m* = lerp(m_t, g*, 1 - beta1)`` and ``c = bc1_t / bc1_{t+1}``:
        ``a m_t/bc1_t + (1-a) m*/bc1_{t+1} = (s/bc1_t) lerp(m_t, g*, (1-beta1)(1-a)c/s)``,
        ``s = a + (1-a)c``; the curvatures blend likewise, so m* is never materialised and
        ``a = 1`` leaves every weight of the lerps at exactly 0.
        """
        st, a, t = self.state[p], self.a, self.state[p]["step"]
        bc1, bc2_sqrt = _bias_corrections(beta1, beta2, t)
        bc1_next, bc2_sqrt_next = _bias_corrections(beta1, beta2, t + 1)
        m, v = st["exp_avg"], st["exp_avg_sq"]  # m_t, v_t
        d, blend = self._buffer(p, "d1"), self._buffer(p, "trial")
        c, r = bc1 / bc1_next, bc2_sqrt / bc2_sqrt_next
        s, s2 = a + (1 - a) * c, a + (1 - a) * r
        if self.compile:  # the same math in one fused pass
            blended = self.keep_moments == "blended"
            scalars = (beta1, beta2, a,
                       self._scalar(p, "blend", (1 - beta1) * ((1 - a) * c / s)),
                       self._scalar(p, "blend d", (1 - a) * r / s2),
                       self._scalar(p, "eps", eps * bc2_sqrt_next),
                       self._scalar(p, "step", -(lr * s * bc2_sqrt / (bc1 * s2))))
            if self._scheme.name == "lat-exact" and self._lat_windowed(p, m, v, g_trial, d, st["w"]):
                # with the bin sums of the new w (LAT exact's windowed solve reads them next)
                fused_lat.backtrack(self._lat_window(p), blended, m, v, g_trial, d, st["w"], *scalars)
            else:
                fused.backtrack_fn(blended)(*fused.flat(m, v, g_trial, d, st["w"]), *scalars)
            return d
        v2 = torch.mul(v, beta2, out=self._buffer(p, "v2")).addcmul_(
            g_trial, g_trial, value=1 - beta2
        )  # v*
        torch.lerp(m, g_trial, (1 - beta1) * ((1 - a) * c / s), out=blend)
        if self.keep_moments == "blended":  # a m_t + (1-a) m*, a v_t + (1-a) v*
            m.lerp_(g_trial, (1 - beta1) * (1 - a))
            v.lerp_(v2, 1 - a)
        torch.sqrt_(v2).add_(eps * bc2_sqrt_next)  # D*
        d.lerp_(v2, (1 - a) * r / s2)  # D_comb: lr d_comb = (s2 / bc2_sqrt) D_comb
        st["w"].addcdiv_(blend, d, value=-(lr * s * bc2_sqrt / (bc1 * s2))).clamp_(-1.0, 1.0)
        return d

    def _backtrack_gradient(
        self, p: Tensor, g_first: Tensor, g_trial: Tensor, lr: float, beta1: float, beta2: float,
        eps: float,
    ) -> Tensor:
        """Blend the raw gradients and take the LAQ step with the blend; returns D."""
        st, t = self.state[p], self.state[p]["step"]
        bc1, bc2_sqrt = _bias_corrections(beta1, beta2, t)
        g = g_first.lerp_(g_trial, 1 - self.a)  # no longer any parameter's .grad
        m, v = st["exp_avg"], st["exp_avg_sq"]  # m_{t-1}, v_{t-1}: updated below with the blend
        if self.keep_moments == "current":  # the state takes m_t, v_t; m, v become scratch
            bufs = self._scratch[id(p)]
            st["exp_avg"], bufs["m1"] = bufs["m1"], m
            st["exp_avg_sq"], bufs["v1"] = bufs["v1"], v
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        d = torch.sqrt(v, out=self._buffer(p, "d1")).add_(eps * bc2_sqrt)
        st["w"].addcdiv_(m, d, value=-(lr * bc2_sqrt / bc1)).clamp_(-1.0, 1.0)
        return d


def _bias_corrections(beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """Adam's 1 - beta1^t and sqrt(1 - beta2^t), computed as torch.optim.Adam computes them."""
    return 1 - beta1**step, (1 - beta2**step) ** 0.5




