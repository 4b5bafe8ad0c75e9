"""One training run = one Sacred experiment, recorded in the run store under its run id.

From Python: ``run_config(RunConfig(...), "runs")``. From the command line::

    python -m benchmark.run with method=blaq bits=1 task=mnist-mlp profile=smoke seed=0

The run directory is ``<runs_dir>/<run_id>`` (docs/design.md, "The run store"). Asking again for
a run id whose run completed returns ``cached`` without training. A run that did not complete
(interrupted, killed, or FAILED) is trained again when asked: it resumes from its last epoch
checkpoint when there is one (``_checkpoints/<run_id>.pt``) and ends with exactly the numbers of
an uninterrupted run; its old directory is replaced. While a process trains a run id it holds
``_locks/<run_id>.lock``; a second process asking for it gets ``busy``.

Command-line exit status: 0 completed or cached, 1 failed, 2 bad input, 3 busy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

import benchmark
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.methods import get_method
from benchmark.quant.zigzag import MAX_TRACE
from benchmark.store import (
    RunBusyError,
    RunLock,
    check_store,
    checkpoint_path,
    open_store,
    read_run,
    run_dir,
    write_json_atomic,
)

if TYPE_CHECKING:
    from benchmark.tasks import Data, Profile, Task

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, which warns on every start
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from sacred import Experiment
    from sacred.observers import FileStorageObserver
    from sacred.run import Run
    from sacred.serializer import flatten
    from sacred.utils import apply_backspaces_and_linefeeds

CHECKPOINT_FORMAT = 1
LOSS_SYNC_EVERY = 50  # iterations between host reads of the loss (the divergence check): no sync per step
DEVICES = ("auto", "cpu", "cuda")
EXIT_STATUS = {"completed": 0, "cached": 0, "failed": 1, "busy": 3}

# settings that do not change the numbers: part of the Sacred config, not of the run id
SETTINGS: dict[str, Any] = {
    "device": "auto",
    "data_root": None,
    "download": False,
    "runs_dir": "runs",
    "threads": None,
    "progress": False,
}
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the run stops and is recorded as FAILED."""


@dataclass(frozen=True)
class RunOutcome:
    """What ``run_config`` did: ``completed`` (trained now), ``cached``, ``failed`` or ``busy``."""

    run_id: str
    status: str
    result: dict[str, Any] | None
    reason: str | None
    run_dir: Path


class StoreObserver(FileStorageObserver):
    """Sacred's file storage with atomic JSON writes (a killed process leaves no half file) and
    the run's ``info`` inside run.json, as the run store's readers expect."""

    def save_json(self, obj: Any, filename: str) -> None:
        if filename == "run.json":
            obj = {**obj, "info": self.info or {}}
        write_json_atomic(Path(self.dir) / filename, flatten(obj))


class _StderrHandler(logging.Handler):
    """Log records to whatever ``sys.stderr`` is at the time (pytest and Sacred swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _sacred_logger() -> logging.Logger:
    logger = logging.getLogger("benchmark.run.sacred")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return logger


@dataclass
class _Prepared:
    """What a run needs that must be checked (or loaded) before its directory is created."""

    config: RunConfig
    task: Task
    profile: Profile
    data: Data
    device: torch.device
    runs_dir: Path
    progress: bool


class RunExperiment(Experiment):
    """The Sacred experiment of one training run; its main command trains through the run store.

    ``run()`` of the main command resolves and validates the configuration and loads the data
    before anything is written, then either returns ``cached``/``busy`` or starts the Sacred run
    with the store's observer and the run id as its ``_id``. Other commands (``print_config``,
    ...) are plain Sacred.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.captured_out_filter = apply_backspaces_and_linefeeds  # tqdm's \r do not pile up
        self.logger = _sacred_logger()
        self._prepared: _Prepared | None = None
        self._command_line = False

    def run_commandline(self, argv: Any = None) -> Run | None:
        self._command_line = True
        try:
            return super().run_commandline(argv)
        finally:
            self._command_line = False

    def run(
        self,
        command_name: str | None = None,
        config_updates: dict | None = None,
        named_configs: Iterable[str] = (),
        info: dict | None = None,
        meta_info: dict | None = None,
        options: dict | None = None,
    ) -> Run | None:
        """Sacred's ``run``; the main command goes through the run store (None if cached or busy)."""
        if command_name not in (None, self.default_command):
            return super().run(command_name, config_updates, named_configs, info, meta_info, options)
        try:
            if list(named_configs):
                raise UserError(f"this experiment has no named configs ({', '.join(named_configs)}); "
                                "set values with `with key=value`")
            outcome, sacred_run = self.run_in_store(config_updates or {}, options or {})
        except UserError as err:
            if self._command_line:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        if self._command_line:
            print(_describe(outcome), file=sys.stderr)
            raise SystemExit(EXIT_STATUS[outcome.status])
        return sacred_run

    def run_in_store(self, updates: dict[str, Any], options: dict[str, Any]) -> tuple[RunOutcome, Run | None]:
        """Validate, load the data, then train the run (or find it cached/busy); see the module doc."""
        unknown = sorted(set(updates) - set(RUN_FIELDS) - set(SETTINGS))
        if unknown:
            raise UserError(f"unknown setting(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(sorted((*RUN_FIELDS, *SETTINGS)))}")
        settings = {**SETTINGS, **{k: v for k, v in updates.items() if k in SETTINGS}}
        config = RunConfig.from_dict({k: v for k, v in updates.items() if k in RUN_FIELDS}).resolved()
        device = resolve_device(settings["device"])
        threads = _check_threads(settings["threads"])
        runs_dir = Path(str(settings["runs_dir"]))
        rid = config.run_id
        if check_store(runs_dir):
            cached = _cached_outcome(runs_dir, rid)
            if cached is not None:
                return cached, None
        with _torch_settings(device, threads):
            from benchmark.tasks import get_task

            task = get_task(config.task)
            profile = task.profile(config.profile)
            data = task.load_data(profile, settings["data_root"], download=bool(settings["download"]),
                                  device=device, seed=config.seed)
            open_store(runs_dir)
            try:
                lock = RunLock(runs_dir, rid).acquire()
            except RunBusyError as err:
                return RunOutcome(rid, "busy", None, str(err), run_dir(runs_dir, rid)), None
            try:
                cached = _cached_outcome(runs_dir, rid)  # finished while we were loading data
                if cached is not None:
                    return cached, None
                shutil.rmtree(run_dir(runs_dir, rid), ignore_errors=True)
                return self._train_in_sacred(
                    _Prepared(config, task, profile, data, device, runs_dir, bool(settings["progress"])),
                    # the run's fields (its profile's settings are in info["config"], hashed in the id)
                    {**dataclasses.asdict(config), **settings, "device": str(device),
                     "runs_dir": str(runs_dir)},
                    options,
                )
            finally:
                lock.release()

    def _train_in_sacred(self, prepared: _Prepared, sacred_config: dict[str, Any],
                         options: dict[str, Any]) -> tuple[RunOutcome, Run | None]:
        rid = prepared.config.run_id
        options = dict(options)
        options["--id"] = rid
        options["--capture"] = options.get("--capture") or "sys"
        options["--loglevel"] = options.get("--loglevel") or ("INFO" if prepared.progress else "WARNING")
        observers = self.observers
        self.observers = [StoreObserver(prepared.runs_dir)]
        self._prepared = prepared
        path = run_dir(prepared.runs_dir, rid)
        try:
            # the info is complete before Sacred's heartbeat thread first reads it; the run only
            # rebinds run.info (never mutates it), so the thread never sees a dict change size
            info = {"run_id": rid, "config": prepared.config.key(), "data": dict(prepared.data.info),
                    "env": environment(prepared.device)}
            sacred_run = super().run(config_updates=sacred_config, info=info, options=options)
        except Exception as err:
            return RunOutcome(rid, "failed", None, f"{type(err).__name__}: {err}", path), None
        finally:
            self.observers = observers
            self._prepared = None
        checkpoint_path(prepared.runs_dir, rid).unlink(missing_ok=True)
        return RunOutcome(rid, "completed", sacred_run.result, None, path), sacred_run


def _cached_outcome(runs_dir: Path, rid: str) -> RunOutcome | None:
    record = read_run(run_dir(runs_dir, rid))
    if record.status != "completed":
        return None
    return RunOutcome(rid, "cached", record.result, None, record.path)


def _describe(outcome: RunOutcome) -> str:
    line = f"run {outcome.run_id} {outcome.status}: {outcome.run_dir}"
    if outcome.result is not None:
        line += f"  test_acc {outcome.result['test_acc']:.2f}%"
    if outcome.reason and outcome.reason.strip():
        line += f"  ({outcome.reason.strip().splitlines()[-1]})"
    return line


ex = RunExperiment("blaq-benchmark", save_git_info=False)
ex.add_config({**RunConfig().__dict__, **SETTINGS,
               # None is "the default for this task and method", like "auto" (see RunConfig)
               "scheme": None, "blend": None, "keep_moments": None})


def run_config(
    config: RunConfig,
    runs_dir: str | os.PathLike[str] = "runs",
    *,
    data_root: str | os.PathLike[str] | None = None,
    device: str = "auto",
    download: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> RunOutcome:
    """Train ``config`` into the run store at ``runs_dir`` (or find it cached or busy there).

    Bad input raises UserError before anything is written; a run that raises or diverges is
    recorded as FAILED and returned as ``failed`` with the reason; Ctrl-C (KeyboardInterrupt)
    records it as INTERRUPTED and propagates. One run at a time per process: the thread count
    and torch's deterministic mode are process-wide (they are restored afterwards).
    """
    updates = {**dataclasses.asdict(config), "runs_dir": str(runs_dir),
               "data_root": None if data_root is None else str(data_root), "device": device,
               "download": download, "threads": threads, "progress": progress}
    outcome, _ = ex.run_in_store(updates, {})
    return outcome


# --------------------------------------------------------------------------------------------
# settings that do not change the numbers


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; UserError for unknown names or a missing GPU."""
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(device)


def _check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a positive integer (or None for torch's default), not {threads!r}")
    return threads


@contextlib.contextmanager
def _torch_settings(device: torch.device, threads: int | None) -> Iterator[None]:
    """Thread count and deterministic kernels for one run; the process's own settings come back after.

    On the CPU every op runs in torch's deterministic mode. On CUDA, cuDNN is made deterministic
    (torch's global deterministic mode would refuse ops such as ResNet's adaptive pooling backward).
    """
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]


# --------------------------------------------------------------------------------------------
# the record of a run: environment, seeds, checkpoints


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus ``+g<short commit>`` and ``-dirty`` when run from a git checkout."""
    version = benchmark.__version__
    here = Path(benchmark.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        top, head = git("rev-parse", "--show-toplevel", "--short", "HEAD").splitlines()
        if Path(top).resolve() / "benchmark" != here:  # installed inside some other repository
            return version
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, ValueError, subprocess.SubprocessError):
        return version
    return f"{version}+g{head}" + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and threads of this process: what a reader needs to compare runs."""
    import sacred
    import torchvision

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()})"
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": np.__version__,
            "sacred": sacred.__version__, "device": name, "threads": torch.get_num_threads(),
            "code_version": code_version()}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the global generator is what third-party code draws from
    torch.manual_seed(seed)


def _data_generator(data: Data) -> torch.Generator | None:
    """The generator that draws the training order, when the train split exposes one."""
    gen = getattr(data.train, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


def _rng_state(data: Data) -> dict[str, Any]:
    """Every random state that the rest of a run draws from, as tensors and plain numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - saved for exact resume
    py_version, py_state, py_gauss = random.getstate()
    gen = _data_generator(data)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "data": gen.get_state() if gen is not None else None,
    }


def _set_rng_state(state: dict[str, Any], data: Data) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np_state = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                npy["gauss"])
    np.random.set_state(np_state)  # noqa: NPY002 - restored for exact resume
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    gen = _data_generator(data)
    if gen is not None and state["data"] is not None:
        gen.set_state(state["data"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, run_id: str) -> dict[str, Any] | None:
    """The checkpoint of ``run_id`` (loaded with weights_only=True), or None if absent or unusable."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged or foreign file: start the run from scratch
        return None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT \
            or payload.get("run_id") != run_id:
        return None
    return payload


def model_digest(model: nn.Module) -> str:
    """sha256 of the model's state (names and bytes): equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# training


def make_optimizer(config: RunConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The method's optimizer on ``model``: Adam (fp), LossAwareAdam (BWN/TWN/LAB/LAQ) or BLAQ."""
    step = get_method(config.method).step
    if step == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    from benchmark.quant import BLAQ, LossAwareAdam

    common = {"scheme": config.scheme, "bits": config.bits, "lr": lr,
              "quantize_first": config.quantize_first, "quantize_last": config.quantize_last,
              "zigzag": True}
    if step == "loss-aware":
        return LossAwareAdam(model, **common)
    return BLAQ(model, a=config.a, m=config.m, blend=config.blend,
                keep_moments=config.keep_moments, **common)


def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode over a split."""
    model.eval()
    counts: list[torch.Tensor] = []
    total = 0
    with torch.no_grad():
        for x, y in batches:
            counts.append((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    return 100.0 * int(torch.stack(counts).sum()) / total if total else 0.0


def _train_step(opt: torch.optim.Optimizer, model: nn.Module, loss_fn: Any,
                x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one mini-batch; returns the loss and logits of its first pass.

    Every optimizer gets a closure: BLAQ calls it twice in its active epochs (the second time at
    the trial point), the others once.
    """
    first: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        if not first:
            first.extend((loss.detach(), logits.detach()))
        return loss

    opt.step(closure)
    return first[0], first[1]


def decimated_iterations(n: int, max_points: int = MAX_TRACE) -> np.ndarray:
    """1-based iterations 1, 1+s, 1+2s, ... up to ``n``, with s the least power of 2 that keeps at
    most ``max_points`` of them: the ZigZagMeter's own decimation, for runs without a meter."""
    stride = 1
    while -(-n // stride) > max_points:
        stride *= 2
    return np.arange(1, n + 1, stride, dtype=np.int64)


def make_trace(losses: list[float], meter: Any | None) -> dict[str, np.ndarray]:
    """The run's per-iteration trace: the meter's (bounded) trace plus the loss at its iterations."""
    loss = np.asarray(losses, dtype=np.float64)
    if meter is None:
        trace: dict[str, np.ndarray] = {"iteration": decimated_iterations(len(loss))}
    else:
        trace = meter.pop_trace()
    # an interrupt between a step and the read of its loss leaves the last losses unknown: NaN
    known = trace["iteration"] <= len(loss)
    trace["loss"] = np.full(len(trace["iteration"]), np.nan)
    trace["loss"][known] = loss[trace["iteration"][known] - 1]
    return trace


def summarize(history: dict[str, list[float]]) -> dict[str, Any]:
    """The run's result from its per-epoch history (docs/design.md): best-val selection, ties -> earliest."""
    val = history["val_acc"]
    best = int(np.argmax(val))  # the first of equal maxima
    result: dict[str, Any] = {
        "test_acc": history["test_acc"][best],
        "final_test_acc": history["test_acc"][-1],
        "best_val_acc": val[best],
        "best_epoch": best + 1,
        "final_train_loss": history["train_loss"][-1],
        "train_time_s": history["wall_time"][-1],
        "epochs": len(val),
    }
    for key in (k for k in history if k.startswith("zz_")):
        finite = [v for v in history[key] if math.isfinite(v)]
        result[key] = float(np.mean(finite)) if finite else None
    return result


@ex.main
def train(_run: Run) -> dict[str, Any]:
    """The training loop of one run: epochs of optimizer steps, evaluation, metrics, checkpoints."""
    prepared = ex._prepared
    if prepared is None:
        raise RuntimeError("start runs with run_config() or the command line, not ex.run() directly")
    cfg, task, profile, data, device = (prepared.config, prepared.task, prepared.profile,
                                        prepared.data, prepared.device)
    rid = cfg.run_id
    seed_everything(cfg.seed)
    model = task.build_model(profile).to(device)
    opt = make_optimizer(cfg, model, profile.lr)
    scheduler = task.make_scheduler(opt, profile, cfg.lr_schedule)
    meter = getattr(opt, "zigzag", None)
    history: dict[str, list[float]] = {}
    losses: list[float] = []  # the first-pass loss of every iteration so far
    start_epoch = 0
    ckpt_path = checkpoint_path(prepared.runs_dir, rid)
    ckpt = load_checkpoint(ckpt_path, rid)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"], data)
        history = {k: list(v) for k, v in ckpt["history"].items()}
        losses = ckpt["losses"].tolist()
        start_epoch = int(ckpt["epoch"])
    _run.info = {**_run.info, "resumed_from_epoch": start_epoch}
    for name, values in history.items():
        for epoch, value in enumerate(values, start=1):
            _run.log_scalar(name, value, epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            metrics = _train_epoch(epoch, cfg, prepared, model, opt, losses)
            scheduler.step()
            metrics["val_acc"] = evaluate(model, data.val)
            metrics["test_acc"] = evaluate(model, data.test)
            metrics["wall_time"] = (history.get("wall_time") or [0.0])[-1] + metrics["epoch_time"]
            if meter is not None:
                metrics.update({k: float(v) for k, v in meter.epoch_summary(reset=True).items()})
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
                _run.log_scalar(name, value, epoch + 1)
            if prepared.progress:
                _print_epoch(epoch, cfg.epochs, metrics)
            save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "run_id": rid, "epoch": epoch + 1,
                "model": model.state_dict(), "optimizer": opt.state_dict(),  # incl. the meter
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(data), "history": history,
                "losses": torch.tensor(losses, dtype=torch.float64),
            })
    finally:
        _save_trace(_run, make_trace(losses, meter))
    _run.info = {**_run.info, "model_digest": model_digest(model)}
    return summarize(history)


def _train_epoch(epoch: int, cfg: RunConfig, prepared: _Prepared, model: nn.Module,
                 opt: torch.optim.Optimizer, losses: list[float]) -> dict[str, float]:
    """One pass over the training split; appends each iteration's loss to ``losses``."""
    from tqdm import tqdm

    data, device, loss_fn = prepared.data, prepared.device, prepared.task.loss_fn
    if hasattr(opt, "set_epoch"):
        opt.set_epoch(epoch)
    lr = float(opt.param_groups[0]["lr"])
    model.train()
    loss_sum = 0.0
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    t0 = time.perf_counter()
    bar = tqdm(data.train, total=len(data.train), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               file=sys.stderr, disable=not prepared.progress, leave=False)
    pending: list[tuple[torch.Tensor, int]] = []  # losses still on the device: one sync per flush

    def flush() -> float:
        if not pending:
            return 0.0
        values = torch.stack([loss for loss, _ in pending]).tolist()
        sizes = [n for _, n in pending]
        pending.clear()
        start = len(losses)
        losses.extend(values)
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise TrainingDiverged(f"training diverged: the loss is {value} at epoch "
                                       f"{epoch + 1}, iteration {start + i + 1 - first_iteration}")
        return sum(v * n for v, n in zip(values, sizes, strict=True))

    first_iteration = len(losses)
    try:
        for x, y in bar:
            loss, logits = _train_step(opt, model, loss_fn, x, y)
            pending.append((loss, len(y)))
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            if len(pending) >= LOSS_SYNC_EVERY:
                loss_sum += flush()
    except BaseException:
        # keep the losses of the steps taken (the trace of an interrupted run needs them), and
        # report a non-finite loss before a crash as the reason
        flush()
        raise
    loss_sum += flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": 100.0 * int(correct) / max(seen, 1),
        "lr": lr,
        "epoch_time": time.perf_counter() - t0,
        "blaq_active": float(bool(getattr(opt, "blaq_active", False))),
    }


def _print_epoch(epoch: int, epochs: int, m: dict[str, float]) -> None:
    from tqdm import tqdm

    tqdm.write(f"epoch {epoch + 1}/{epochs}  loss {m['train_loss']:.4f}  train {m['train_acc']:.2f}%  "
               f"val {m['val_acc']:.2f}%  test {m['test_acc']:.2f}%  {m['epoch_time']:.1f} s",
               file=sys.stderr)


def _save_trace(run: Run, trace: dict[str, np.ndarray]) -> None:
    """The per-iteration trace as the artifact ``trace.npz`` (written even when the run fails)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.npz"
        np.savez_compressed(path, **trace)
        run.add_artifact(str(path), "trace.npz")


if __name__ == "__main__":
    ex.run_commandline()
