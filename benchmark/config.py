"""One training run's configuration: validation, resolution of defaults, and the run id.

The run id is the md5 of the resolved, result-affecting configuration, so the same
configuration always maps to the same record in the run store (and is not trained twice).
Settings that do not change the numbers (device, data root, progress output) are not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import UserError
from benchmark.methods import get_method

PROFILES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class RunConfig:
    """Everything that changes the result of one training run.

    ``None`` and ``"auto"`` mean "the default for this task, method and profile"; ``resolved()``
    fills them in, and sets the settings a method does not use (``a``/``m`` outside BLAQ) to None
    so that they cannot split one result into two run ids. ``extra`` holds free-form settings
    for a user's own tasks or methods (the suite's own code does not read it); it is part of the
    run id, so runs that differ in it are different runs.
    """

    task: str = "mnist-mlp"
    method: str = "blaq"
    bits: int = 1
    scheme: str | None = "auto"
    a: float | None = None
    m: int | None = None
    blend: str | None = "moment"
    keep_moments: str | None = "blended"
    lr_schedule: str = "default"
    quantize_first: bool = True
    quantize_last: bool = True
    profile: str = "quick"
    epochs: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "profile_settings"}  # a key() read back: derived
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(
                f"unknown run setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return cls(**d)

    def resolved(self) -> RunConfig:
        """Validate and fill in the defaults; raises UserError with a one-line reason."""
        from benchmark.tasks import get_task  # the task registry (late: tasks import torchvision)

        if self.profile not in PROFILES:
            raise UserError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        task = get_task(self.task)
        method = get_method(self.method)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise UserError(f"bits must be an integer, not {self.bits!r}")
        # full precision has no bit width to choose; it is recorded as 32
        bits = 32 if self.method == "fp" else self.bits
        scheme = method.scheme_for(bits, self.scheme or "auto")
        if scheme is not None:
            from benchmark.quant import get_scheme

            try:
                get_scheme(scheme).check_bits(bits)
            except ValueError as err:
                raise UserError(str(err)) from None
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed must be a non-negative integer, not {self.seed!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise UserError(f"epochs must be a positive integer, not {self.epochs!r}")
        if self.lr_schedule != "default" and self.lr_schedule not in task.lr_schedules:
            raise UserError(
                f"task {task.name!r} has lr schedules {', '.join(task.lr_schedules)}, "
                f"not {self.lr_schedule!r}"
            )
        if method.step == "blaq":
            from benchmark.quant.optim import BLENDS, KEEP_MOMENTS  # the optimizer's own options

            a = task.default_a if self.a is None else float(self.a)
            m = task.default_m if self.m is None else self.m
            if not 0.0 <= a <= 1.0:
                raise UserError(f"a must lie in [0, 1], not {a}")
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise UserError(f"m (the BLAQ period in epochs) must be a positive integer, not {m!r}")
            blend = self.blend or "moment"
            keep = self.keep_moments or "blended"
            if blend not in BLENDS:
                raise UserError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
            if keep not in KEEP_MOMENTS:
                raise UserError(
                    f"keep_moments must be one of {', '.join(KEEP_MOMENTS)}, not {keep!r}"
                )
        else:
            a = m = blend = keep = None
        profile = task.profile(self.profile)
        epochs = profile.epochs if self.epochs is None else self.epochs
        lr_schedule = task.lr_schedules[0] if self.lr_schedule == "default" else self.lr_schedule
        return dataclasses.replace(
            self, bits=bits, scheme=scheme, a=a, m=m, blend=blend, keep_moments=keep,
            lr_schedule=lr_schedule, epochs=epochs, task=task.name,
        )

    def key(self) -> dict[str, Any]:
        """The resolved configuration as a plain dict, with the profile's result-changing
        settings (width, lr, subsets, ...) under ``profile_settings``: exactly what the run id hashes."""
        from benchmark.tasks import get_task

        resolved = self.resolved()
        key = dataclasses.asdict(resolved)
        key["profile_settings"] = get_task(resolved.task).profile(resolved.profile).settings()
        return key

    @property
    def run_id(self) -> str:
        return run_id(self.key())


def run_id(key: dict[str, Any]) -> str:
    """md5 of the sorted JSON of a resolved configuration, first 16 hex digits."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(blob.encode()).hexdigest()[:16]
