"""The method registry: what a method name in a run config means (quantizer, bit widths, training step)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmark.errors import UserError


@dataclass(frozen=True)
class Method:
    """A training method: which quantizer scheme, at which bit widths, with which optimizer step.

    ``step`` is ``"adam"`` (full precision, plain Adam), ``"loss-aware"`` (one pass a step:
    the LAB/LAQ proximal Newton step, which is an Adam step on the full-precision weights
    followed by the quantizer) or ``"blaq"`` (the two-stage look-ahead/backtrack step).
    """

    name: str
    label: str
    step: str
    bits: tuple[int, ...]
    schemes: tuple[str, ...]
    default_scheme: Callable[[int], str | None]
    description: str

    def scheme_for(self, bits: int, scheme: str = "auto") -> str | None:
        if bits not in self.bits:
            raise UserError(
                f"method {self.name!r} supports bits {', '.join(map(str, self.bits))}, not {bits}"
            )
        if scheme == "auto":
            return self.default_scheme(bits)
        if scheme not in self.schemes:
            raise UserError(
                f"method {self.name!r} takes scheme 'auto' or one of {', '.join(self.schemes)}, "
                f"not {scheme!r}"
            )
        return scheme


def _loss_aware_default(bits: int) -> str:
    """LAQ/BLAQ at 1 bit quantize as LAB, at 2 bits as exact ternary (LAT), above as linear LAQ."""
    return {1: "lab", 2: "lat-exact"}.get(bits, "laq-linear")


LOSS_AWARE_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
LOSS_AWARE_SCHEMES = ("lab", "lat-exact", "lat-approx", "laq-linear", "laq-log")

METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (replacing one of the same name); returns it."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(
            f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None


for _m in (
    Method("fp", "Full precision", "adam", (32,), (), lambda bits: None,
           "full-precision weights, plain Adam"),
    Method("bwn", "BWN", "loss-aware", (1,), ("bwn",), lambda bits: "bwn",
           "binary weights, alpha = mean |w| (XNOR-Net), curvature-blind"),
    Method("twn", "TWN", "loss-aware", (2,), ("twn",), lambda bits: "twn",
           "ternary weights, threshold 0.7 mean |w| (Li et al.), curvature-blind"),
    Method("lab", "LAB", "loss-aware", (1,), ("lab",), lambda bits: "lab",
           "loss-aware binarization (Hou et al. 2017)"),
    Method("laq", "LAQ", "loss-aware", LOSS_AWARE_BITS, LOSS_AWARE_SCHEMES, _loss_aware_default,
           "loss-aware quantization (Hou & Kwok 2018): LAB at 1 bit, LAT at 2, LAQ linear/log above"),
    Method("blaq", "BLAQ", "blaq", LOSS_AWARE_BITS, LOSS_AWARE_SCHEMES, _loss_aware_default,
           "LAQ with a look-ahead step and a backtrack every m-th epoch (Ma et al. 2024)"),
):
    register_method(_m)
