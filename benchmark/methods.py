"""The method registry: what a method name in a run config means.

A method is one ``Method``: its quantizer schemes and bit widths, its optimizer factory
(``step``), and optionally a typed options dataclass (``options``) with the method's own
settings, filled in and checked once by its ``resolved(task)``. A method from user code is one
call::

    register_method(Method("mine", "Mine", make_my_optimizer, bits=(1,), description="..."))

where ``make_my_optimizer(model, config, lr)`` gets the resolved ``RunConfig`` (its
``options`` are the method's options, resolved) and returns a torch optimizer; give the
optimizer a ``zigzag`` meter (``benchmark.quant.ZigZagMeter``) to have the zig-zag metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union

from benchmark.errors import UserError
from benchmark.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from benchmark.config import RunConfig
    from benchmark.tasks import Task

OptimizerFactory = Callable[["nn.Module", "RunConfig", float], "torch.optim.Optimizer"]


def _no_scheme(bits: int) -> str | None:
    return None


@dataclass(frozen=True)
class Method:
    """A training method: which quantizer scheme, at which bit widths, with which optimizer.

    ``step`` is the optimizer factory ``(model, resolved config, lr) -> optimizer``, or the name
    of a built-in one: ``"adam"`` (full precision, plain Adam), ``"loss-aware"`` (one pass a
    step: the LAB/LAQ proximal Newton step, an Adam step on the full-precision weights followed
    by the quantizer) or ``"blaq"`` (the two-stage look-ahead/backtrack step). ``options`` is a
    frozen dataclass of the method's own settings (fields default to "the task's default";
    a ``resolved(task)`` method fills them in and raises UserError on a bad value), or None.
    """

    name: str
    label: str
    step: Union[str, OptimizerFactory]  # noqa: UP007 - a string forward reference inside
    bits: tuple[int, ...]
    schemes: tuple[str, ...] = ()
    default_scheme: Callable[[int], str | None] = _no_scheme
    description: str = ""
    options: type | None = None

    def scheme_for(self, bits: int, scheme: str = "auto") -> str | None:
        if bits not in self.bits:
            raise UserError(
                f"method {self.name!r} supports bits {', '.join(map(str, self.bits))}, not {bits}"
            )
        if scheme == "auto":
            return self.default_scheme(bits)
        if scheme not in self.schemes:
            choices = ", ".join(("auto", *self.schemes))
            raise UserError(f"method {self.name!r} takes scheme {choices}, not {scheme!r}")
        return scheme

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()

    def resolve_options(self, given: dict[str, Any], task: Task) -> dict[str, Any]:
        """The method's options from ``given`` (None values: unset), filled in and checked.

        A name that is another method's option is not this method's setting and is dropped (so
        it cannot split one result into two run ids); a name no method knows is an error.
        """
        mine = set(self.option_names)
        unknown = sorted(k for k in given if k not in mine and k not in all_option_names())
        if unknown:
            valid = f"its options: {', '.join(self.option_names)}" if mine else "it has no options"
            raise UserError(f"method {self.name!r} has no option {', '.join(unknown)} ({valid})")
        if self.options is None:
            return {}
        values = {k: v for k, v in given.items() if k in mine and v is not None}
        resolved = dataclasses.asdict(self.options(**values).resolved(task))
        # options a method gained later are left out of the key while unset (old run ids hold)
        omitted = getattr(self.options, "UNSET_OMITTED", ())
        return {k: v for k, v in resolved.items() if v is not None or k not in omitted}

    def make_optimizer(self, config: RunConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The method's optimizer on ``model`` for a resolved ``config``."""
        factory = STEPS[self.step] if isinstance(self.step, str) else self.step
        return factory(model, config, lr)


def _check_step_options(rounds: Any, compile: Any) -> tuple[int | None, bool | None]:
    """The speed options checked (the optimizers' own check) and normalised: a value equal to
    the default is unset (None), so that one computation never trains under two run ids."""
    from benchmark.quant.optim import check_speed_options
    from benchmark.quant.quantizers import _MAX_ROUNDS  # the spec's cap: rounds=10 is the rule

    rounds, compiled = check_speed_options(rounds, False if compile is None else compile)
    return (None if rounds == _MAX_ROUNDS else rounds), (True if compiled else None)


@dataclass(frozen=True)
class StepOptions:
    """The speed settings of the loss-aware steps (``benchmark.quant.optim``), unset by default.

    ``rounds`` caps the alternation rounds of the iterative schemes per step (None: the spec's
    rule, at most 10 rounds or alpha moving by less than 1e-6); ``compile`` takes the
    ``torch.compile``d path (None: off), whose results equal the default's within float
    rounding. Both change a run's numbers, so a set one is part of the run id; an unset one is
    left out of it (``UNSET_OMITTED``), so every run made before they existed keeps its id.
    """

    rounds: int | None = None
    compile: bool | None = None

    UNSET_OMITTED: ClassVar[tuple[str, ...]] = ("rounds", "compile")

    def resolved(self, task: Task) -> StepOptions:
        return StepOptions(*_check_step_options(self.rounds, self.compile))


@dataclass(frozen=True)
class BLAQOptions:
    """BLAQ's settings: blend coefficient ``a`` and period ``m`` (None: the task's defaults),
    the blend (``moment`` or ``gradient``) and which moments it keeps (``blended``/``current``);
    and the speed settings of ``StepOptions``."""

    a: float | None = None
    m: int | None = None
    blend: str = "moment"
    keep_moments: str = "blended"
    rounds: int | None = None
    compile: bool | None = None

    UNSET_OMITTED: ClassVar[tuple[str, ...]] = StepOptions.UNSET_OMITTED

    def resolved(self, task: Task) -> BLAQOptions:
        from benchmark.quant.optim import check_blaq_options  # the one check (optimizer's own)

        a = task.default_a if self.a is None else self.a
        m = task.default_m if self.m is None else self.m
        return BLAQOptions(*check_blaq_options(a, m, self.blend, self.keep_moments),
                           *_check_step_options(self.rounds, self.compile))


def _quantized_common(config: RunConfig, lr: float) -> dict[str, Any]:
    return {"scheme": config.scheme, "bits": config.bits, "lr": lr,
            "quantize_first": config.quantize_first, "quantize_last": config.quantize_last,
            "zigzag": True}


def adam_step(model: nn.Module, config: RunConfig, lr: float) -> torch.optim.Optimizer:
    """Full precision: plain Adam on every parameter."""
    import torch

    return torch.optim.Adam(model.parameters(), lr=lr)


def loss_aware_step(model: nn.Module, config: RunConfig, lr: float) -> torch.optim.Optimizer:
    """BWN/TWN/LAB/LAQ: ``LossAwareAdam`` with the config's scheme, bits and speed options."""
    from benchmark.quant import LossAwareAdam

    return LossAwareAdam(model, **config.options, **_quantized_common(config, lr))


def blaq_step(model: nn.Module, config: RunConfig, lr: float) -> torch.optim.Optimizer:
    """BLAQ with the config's (resolved) ``BLAQOptions``."""
    from benchmark.quant import BLAQ

    return BLAQ(model, **config.options, **_quantized_common(config, lr))


STEPS: dict[str, OptimizerFactory] = {"adam": adam_step, "loss-aware": loss_aware_step,
                                      "blaq": blaq_step}


def _loss_aware_default(bits: int) -> str:
    """LAQ/BLAQ at 1 bit quantize as LAB, at 2 bits as exact ternary (LAT), above as linear LAQ."""
    return {1: "lab", 2: "lat-exact"}.get(bits, "laq-linear")


LOSS_AWARE_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
LOSS_AWARE_SCHEMES = ("lab", "lat-exact", "lat-approx", "laq-linear", "laq-log")


def _check_method(method: Method) -> None:
    if isinstance(method.step, str) and method.step not in STEPS:
        raise UserError(f"method {method.name!r}: unknown step {method.step!r}; give a factory "
                        f"or one of {', '.join(STEPS)}")
    if not callable(method.step) and not isinstance(method.step, str):
        raise UserError(f"method {method.name!r}: step must be a factory or a step name")
    if not method.bits or any(isinstance(b, bool) or not isinstance(b, int) or b < 1
                              for b in method.bits):
        raise UserError(f"method {method.name!r}: bits must be positive integers, not {method.bits!r}")
    if method.options is not None:
        if not dataclasses.is_dataclass(method.options) or not hasattr(method.options, "resolved"):
            raise UserError(f"method {method.name!r}: options must be a dataclass with a "
                            "resolved(task) method")
        from benchmark.config import RESERVED_NAMES

        clash = sorted(set(method.option_names) & set(RESERVED_NAMES))
        if clash:
            raise UserError(f"method {method.name!r}: option name(s) {', '.join(clash)} are run "
                            "config fields")


METHODS: dict[str, Method] = {}


def _registry() -> Registry[Method]:
    # a view over the module's dict as it is now (a test may swap the dict for a copy)
    return Registry("method", METHODS, item_type=Method, check=_check_method)


def register_method(method: Method) -> Method:
    """Add a method to the registry (replacing one of the same name) after checking it; returns it."""
    return _registry().register(method)


def get_method(name: str | Method) -> Method:
    """The registered method of that name; UserError listing the registered names."""
    return _registry().get(name)


def all_option_names() -> tuple[str, ...]:
    """Every option name of the registered methods (BLAQ's first), in order, without repeats."""
    names = dict.fromkeys(LEGACY_OPTIONS)
    for method in METHODS.values():
        names.update(dict.fromkeys(method.option_names))
    return tuple(names)


# BLAQ's options are in the key of every run (None for other methods): the run ids of the store
# were hashed that way when they were flat RunConfig fields, and must stay what they were
LEGACY_OPTIONS = ("a", "m", "blend", "keep_moments")

for _m in (
    Method("fp", "Full precision", "adam", (32,), (), _no_scheme,
           "full-precision weights, plain Adam"),
    Method("bwn", "BWN", "loss-aware", (1,), ("bwn",), lambda bits: "bwn",
           "binary weights, alpha = mean |w| (XNOR-Net), curvature-blind",
           options=StepOptions),
    Method("twn", "TWN", "loss-aware", (2,), ("twn",), lambda bits: "twn",
           "ternary weights, threshold 0.7 mean |w| (Li et al.), curvature-blind",
           options=StepOptions),
    Method("lab", "LAB", "loss-aware", (1,), ("lab",), lambda bits: "lab",
           "loss-aware binarization (Hou et al. 2017)",
           options=StepOptions),
    Method("laq", "LAQ", "loss-aware", LOSS_AWARE_BITS, LOSS_AWARE_SCHEMES, _loss_aware_default,
           "loss-aware quantization (Hou & Kwok 2018): LAB at 1 bit, LAT at 2, LAQ linear/log above",
           options=StepOptions),
    Method("blaq", "BLAQ", "blaq", LOSS_AWARE_BITS, LOSS_AWARE_SCHEMES, _loss_aware_default,
           "LAQ with a look-ahead step and a backtrack every m-th epoch (Ma et al. 2024)",
           options=BLAQOptions),
):
    register_method(_m)
