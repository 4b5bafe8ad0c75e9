"""The method library: loss-aware quantizers, the LAQ/BLAQ optimizers and zig-zag metrics, for any torch model."""

from benchmark.quant.optim import BLAQ, LossAwareAdam, quantizable_weights
from benchmark.quant.quantizers import (
    Scheme,
    available_schemes,
    get_scheme,
    quantize,
    quantize_with_levels,
    register_scheme,
)
from benchmark.quant.zigzag import ZigZagMeter

__all__ = [
    "BLAQ",
    "LossAwareAdam",
    "Scheme",
    "ZigZagMeter",
    "available_schemes",
    "get_scheme",
    "quantizable_weights",
    "quantize",
    "quantize_with_levels",
    "register_scheme",
]
