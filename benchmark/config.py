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

PROFILES = ("smoke", "quick", "paper")  # every task defines these (benchmark.tasks.registry)


@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything that changes the result of one training run.

    ``None`` and ``"auto"`` mean "the default for this task, method and profile"; ``resolved()``
    fills them in. ``options`` holds the method's own settings (``benchmark.methods``: BLAQ's
    ``a``, ``m``, ``blend``, ``keep_moments``); they may also be given as keywords,
    ``RunConfig(method="blaq", m=2)``, and BLAQ's read back as attributes (``config.a``).
    Resolution keeps only the method's own options, filled in and checked by the method, so an
    option of another method cannot split one result into two run ids. ``extra`` holds
    free-form settings for a user's own tasks or methods (the suite's own code does not read
    it); it is part of the run id, so runs that differ in it are different runs.
    """

    task: str = "mnist-mlp"
    method: str = "blaq"
    bits: int = 1
    scheme: str | None = "auto"
    lr_schedule: str = "default"
    quantize_first: bool = True
    quantize_last: bool = True
    profile: str = "quick"
    epochs: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(self, task: str = "mnist-mlp", method: str = "blaq", bits: int = 1,
                 scheme: str | None = "auto", lr_schedule: str = "default",
                 quantize_first: bool = True, quantize_last: bool = True, profile: str = "quick",
                 epochs: int | None = None, seed: int = 0, extra: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, **method_options: Any) -> None:
        given = {**(options or {}), **method_options}
        values = {"task": task, "method": method, "bits": bits, "scheme": scheme,
                  "lr_schedule": lr_schedule, "quantize_first": quantize_first,
                  "quantize_last": quantize_last, "profile": profile, "epochs": epochs,
                  "seed": seed, "extra": dict(extra) if isinstance(extra, dict) else ({} if extra is None else extra),
                  "options": {k: v for k, v in given.items() if v is not None}}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # BLAQ's options as attributes (None when the config has none): the readers' shorthand
    @property
    def a(self) -> float | None:
        return self.options.get("a")

    @property
    def m(self) -> int | None:
        return self.options.get("m")

    @property
    def blend(self) -> str | None:
        return self.options.get("blend")

    @property
    def keep_moments(self) -> str | None:
        return self.options.get("keep_moments")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """A config from its fields and method options, flat (as ``flat()`` writes them) or
        under ``options``; UserError naming an unknown key."""
        from benchmark.methods import all_option_names

        names = [f.name for f in dataclasses.fields(cls)]
        d = {k: v for k, v in d.items() if k != "profile_settings"}  # a key() read back: derived
        unknown = sorted(set(d) - set(names) - set(all_option_names()))
        if unknown:
            valid = sorted({*names, *all_option_names()} - {"options"})
            raise UserError(f"unknown run setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return cls(**d)

    def resolved(self) -> RunConfig:
        """Validate and fill in the defaults; raises UserError with a one-line reason."""
        from benchmark.methods import get_method
        from benchmark.tasks import get_task  # the task registry (late: tasks import torchvision)

        if self.profile not in PROFILES:
            raise UserError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        task = get_task(self.task)
        method = get_method(self.method)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise UserError(f"bits must be an integer, not {self.bits!r}")
        # full precision has no bit width to choose; it is recorded as 32
        bits = 32 if method.bits == (32,) else self.bits
        scheme = method.scheme_for(bits, self.scheme or "auto")
        if scheme is not None:
            from benchmark.quant import get_scheme

            try:
                get_scheme(scheme).check_bits(bits)
            except ValueError as err:
                raise UserError(str(err)) from None
        flags = {name: _flag(name, getattr(self, name)) for name in ("quantize_first", "quantize_last")}
        if not isinstance(self.extra, dict) or not all(isinstance(k, str) for k in self.extra):
            raise UserError(f"extra must be a dict with string keys, not {self.extra!r}")
        try:
            json.dumps(self.extra, sort_keys=True)
        except (TypeError, ValueError):
            raise UserError(f"extra must hold JSON values (numbers, strings, lists, dicts), "
                            f"not {self.extra!r}") from None
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed must be a non-negative integer, not {self.seed!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise UserError(f"epochs must be a positive integer, not {self.epochs!r}")
        if self.lr_schedule != "default" and self.lr_schedule not in task.lr_schedules:
            raise UserError(
                f"task {task.name!r} has lr schedules {', '.join(task.lr_schedules)}, "
                f"not {self.lr_schedule!r}"
            )
        options = method.resolve_options(self.options, task)
        profile = task.profile(self.profile)
        epochs = profile.epochs if self.epochs is None else self.epochs
        lr_schedule = task.lr_schedules[0] if self.lr_schedule == "default" else self.lr_schedule
        return dataclasses.replace(
            self, bits=bits, scheme=scheme, options=options, lr_schedule=lr_schedule,
            epochs=epochs, task=task.name, **flags,
        )

    def flat(self) -> dict[str, Any]:
        """The resolved configuration as one flat dict: the fields, then the method's options
        beside them (BLAQ's four always present, None for other methods), in ``config_keys()``
        order."""
        from benchmark.methods import LEGACY_OPTIONS

        resolved = self.resolved()
        fields = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(resolved)
                  if f.name != "options"}
        options = {**dict.fromkeys(LEGACY_OPTIONS), **resolved.options}
        flat = {**fields, **options}
        order = dict.fromkeys((*config_keys(every_method=True), *flat))
        return {k: flat[k] for k in order if k in flat}

    def key(self) -> dict[str, Any]:
        """``flat()`` with the profile's result-changing settings (width, lr, subsets, ...) under
        ``profile_settings``: exactly what the run id hashes."""
        from benchmark.tasks import get_task

        key = self.flat()
        key["profile_settings"] = get_task(key["task"]).profile(key["profile"]).settings()
        return key

    @property
    def run_id(self) -> str:
        return run_id(self.key())


RESERVED_NAMES = (*(f.name for f in dataclasses.fields(RunConfig)), "profile_settings")


def config_keys(every_method: bool = False) -> tuple[str, ...]:
    """The keys of a run's flat config, in order: the fields with BLAQ's options after ``scheme``
    (their place when they were fields; the store's columns), then, with ``every_method``, the
    options of the other registered methods."""
    from benchmark.methods import LEGACY_OPTIONS, all_option_names

    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name != "options"]
    at = fields.index("scheme") + 1
    head = (*fields[:at], *LEGACY_OPTIONS, *fields[at:])
    if not every_method:
        return head
    return (*head, *(n for n in all_option_names() if n not in head))


def _flag(name: str, value: Any) -> bool:
    """A true/false setting as a bool: True/False, or 1/0 (as a command line may give them),
    normalised before hashing so that one computation never trains under two run ids."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UserError(f"{name} must be true or false, not {value!r}")


def run_id(key: dict[str, Any]) -> str:
    """md5 of the sorted JSON of a resolved configuration, first 16 hex digits."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(blob.encode()).hexdigest()[:16]
