"""The method library: loss-aware quantizers, the LAQ/BLAQ optimizers and zig-zag metrics, for any torch model."""

from benchmark.quant.quantizers import (
    Scheme,
    available_schemes,
    get_scheme,
    quantize,
    quantize_with_levels,
    register_scheme,
)

__all__ = [
    "Scheme",
    "available_schemes",
    "get_scheme",
    "quantize",
    "quantize_with_levels",
    "register_scheme",
]
