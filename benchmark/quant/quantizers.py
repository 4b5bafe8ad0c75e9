"""Weight quantizers w -> w_hat = alpha * b: the curvature-blind (BWN, TWN) and loss-aware (LAB, LAQ) schemes.

Each scheme solves, for one tensor, min over alpha > 0 and b in its level set of
sum_i d_i (w_i - alpha b_i)^2, with d the diagonal curvature (``None`` means constant).

Conventions shared by all schemes (they are the documented answers to degenerate inputs):

- one alpha per tensor, returned as a 0-dim tensor of w's dtype on w's device;
- the sign of 0 is +1 for the binary schemes;
- a ``d`` with no positive entry carries no curvature and is treated as constant (``d=None``);
- when no weight with positive curvature is non-zero (an all-zero tensor, say), every choice has
  the same objective: alpha is 0 and b is sign(w) (binary) or 0 (the other schemes), so
  w_hat = 0 and nothing is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.errors import UserError

Solver = Callable[[Tensor, "Tensor | None", int, "Tensor | None"], "tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class Scheme:
    """A quantizer: its level set per bit width and the solver that picks alpha and b.

    ``solve(w, d, bits, init)`` gets a detached floating tensor, the curvature (same shape,
    or None for constant) and the previous levels (or None), and returns ``(alpha, b)``.
    ``positive_levels(bits)`` lists the non-negative levels (the set is symmetric about 0);
    ``steps(bits)`` is n, the level spacing in units of alpha / n (used by the zig-zag metrics).
    """

    name: str
    bits: tuple[int, ...]
    loss_aware: bool
    solve: Solver
    positive_levels: Callable[[int], Sequence[float]]
    steps: Callable[[int], int] = lambda bits: 1
    description: str = ""

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


def register_scheme(scheme: Scheme) -> Scheme:
    """Add a scheme to the registry (replacing one of the same name) and return it."""
    _SCHEMES[scheme.name] = scheme
    return scheme


def available_schemes() -> list[str]:
    """The registered scheme names, sorted."""
    return sorted(_SCHEMES)


def get_scheme(name: str | Scheme) -> Scheme:
    """Look a scheme up by name; UserError (a ValueError) listing the valid names if unknown."""
    if isinstance(name, Scheme):
        return name
    try:
        return _SCHEMES[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown quantizer scheme {name!r}; choose one of {', '.join(available_schemes())}"
        ) from None


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
    if d is not None and (not sch.loss_aware or not bool(torch.any(d > 0))):
        d = None
    return sch.solve(w, d, bits, init)


@torch.no_grad()
def quantize(w: Tensor, scheme: str | Scheme, bits: int = 1, d: Tensor | None = None) -> Tensor:
    """The quantized weight w_hat = alpha * b (same shape, dtype and device as ``w``)."""
    alpha, b = quantize_with_levels(w, scheme, bits, d)
    return b.mul_(alpha)


# --- solvers -------------------------------------------------------------------------------


def _signs(w: Tensor) -> Tensor:
    """sign(w) with sign(0) = +1 (binary levels)."""
    one = torch.ones((), dtype=w.dtype, device=w.device)
    return torch.where(w >= 0, one, -one)


def _bwn(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None) -> tuple[Tensor, Tensor]:
    """BWN: b = sign(w), alpha = mean |w| (curvature-blind)."""
    return w.abs().mean(), _signs(w)


def _lab(w: Tensor, d: Tensor | None, bits: int, init: Tensor | None) -> tuple[Tensor, Tensor]:
    """LAB: b = sign(w), alpha = sum(d |w|) / sum(d); with constant d this is BWN."""
    if d is None:
        return _bwn(w, d, bits, init)
    a = w.abs().reshape(-1)
    dd = d.reshape(-1)
    return torch.dot(dd, a) / dd.sum(), _signs(w)


for _scheme in (
    Scheme("bwn", (1,), False, _bwn, lambda bits: (1.0,),
           description="binary, alpha = mean |w| (XNOR-Net BWN)"),
    Scheme("lab", (1,), True, _lab, lambda bits: (1.0,),
           description="binary, alpha = sum(d |w|) / sum(d) (loss-aware binarization)"),
):
    register_scheme(_scheme)
