"""The training loop of one run, as a plain function of its inputs (no Sacred, no run store).

``train(TrainInputs(...), recorder)`` seeds, builds the model and the method's optimizer, resumes
from the checkpoint when there is one, trains the epochs, writes a checkpoint after each, and
returns the run's result (``summarize``). What it reports along the way (per-epoch scalars, info,
the per-iteration trace) goes to the ``Recorder``: the Sacred adapter (``benchmark.run``) records
it in the run store; a test can keep it in memory.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from benchmark import checkpoint
from benchmark.config import RunConfig
from benchmark.methods import get_method
from benchmark.provenance import model_digest
from benchmark.quant.zigzag import MAX_TRACE
from benchmark.summary import RESULT_KEYS, summarize  # noqa: F401  (the result of train())

if TYPE_CHECKING:
    from benchmark.tasks import Data, Profile, Task

LOSS_SYNC_EVERY = 50  # iterations between host reads of the loss (the divergence check): no sync per step


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the run stops and is recorded as FAILED."""


@dataclass(frozen=True)
class TrainInputs:
    """Everything the loop needs: the resolved config, the task, its profile, the loaded data,
    the device, where epoch checkpoints go (None: none written, none resumed) and whether to
    print progress to stderr."""

    config: RunConfig
    task: Task
    profile: Profile
    data: Data
    device: torch.device
    checkpoint: Path | None = None
    progress: bool = False


class Recorder:
    """Where the loop reports; every method is a no-op here (subclass to record)."""

    def log_scalar(self, name: str, value: float, step: int) -> None:
        """A per-epoch scalar (``step`` is the 1-based epoch)."""

    def note(self, **info: Any) -> None:
        """Facts about the run: ``resumed_from_epoch`` at the start, ``model_digest`` at the end."""

    def save_trace(self, trace: dict[str, np.ndarray]) -> None:
        """The per-iteration trace; called once, also when the run raises."""


def make_optimizer(config: RunConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The method's optimizer on ``model`` for a resolved config (the method's own factory)."""
    return get_method(config.method).make_optimizer(config, model, lr)


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


def train_step(opt: torch.optim.Optimizer, model: nn.Module, loss_fn: Any,
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


def train(inputs: TrainInputs, recorder: Recorder | None = None) -> dict[str, Any]:
    """The training loop of one run: epochs of optimizer steps, evaluation, metrics, checkpoints."""
    rec = recorder or Recorder()
    cfg, task, profile, data, device = (inputs.config, inputs.task, inputs.profile, inputs.data,
                                        inputs.device)
    rid = cfg.run_id

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        checkpoint.seed_everything(cfg.seed)
        model = task.build_model(profile).to(device)
        opt = make_optimizer(cfg, model, profile.lr)
        return model, opt, task.make_scheduler(opt, profile, cfg.lr_schedule)

    model, opt, scheduler = fresh()
    history: dict[str, list[float]] = {}
    losses: list[float] = []  # the first-pass loss of every iteration so far
    start_epoch = 0
    ckpt = None
    if inputs.checkpoint is not None:
        checkpoint.remove_stale_temporaries(inputs.checkpoint)  # left by a kill mid-save
        ckpt = checkpoint.load_checkpoint(inputs.checkpoint, rid)
    if ckpt is not None:
        before = checkpoint.rng_state(data)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            checkpoint.set_rng_state(ckpt["rng"], data)
            history = {k: list(v) for k, v in ckpt["history"].items()}
            losses = ckpt["losses"].tolist()
            start_epoch = int(ckpt["epoch"])
            if not 0 <= start_epoch <= cfg.epochs:
                raise ValueError(f"epoch {start_epoch} of {cfg.epochs}")
        except Exception as err:  # tensors of another model, missing keys: never wedge the run
            checkpoint.discard(inputs.checkpoint, f"{type(err).__name__}: {str(err).splitlines()[0]}")
            rec.note(checkpoint_discarded=f"{type(err).__name__}")
            checkpoint.set_rng_state(before, data)  # the data order too, as loaded
            model, opt, scheduler = fresh()  # the same start as a run that never had one
            history, losses, start_epoch = {}, [], 0
    meter = getattr(opt, "zigzag", None)
    rec.note(resumed_from_epoch=start_epoch)
    for name, values in history.items():
        for epoch, value in enumerate(values, start=1):
            rec.log_scalar(name, value, epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            metrics = train_epoch(epoch, inputs, model, opt, losses)
            scheduler.step()
            metrics["val_acc"] = evaluate(model, data.val)
            metrics["test_acc"] = evaluate(model, data.test)
            metrics["wall_time"] = (history.get("wall_time") or [0.0])[-1] + metrics["epoch_time"]
            if meter is not None:
                metrics.update({k: float(v) for k, v in meter.epoch_summary(reset=True).items()})
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
                rec.log_scalar(name, value, epoch + 1)
            if inputs.progress:
                _print_epoch(epoch, cfg.epochs, metrics)
            if inputs.checkpoint is not None:
                checkpoint.save_checkpoint(inputs.checkpoint, {
                    "format": checkpoint.CHECKPOINT_FORMAT, "run_id": rid, "epoch": epoch + 1,
                    "model": model.state_dict(), "optimizer": opt.state_dict(),  # incl. the meter
                    "scheduler": scheduler.state_dict(),
                    "rng": checkpoint.rng_state(data), "history": history,
                    "losses": torch.tensor(losses, dtype=torch.float64),
                })
    finally:
        rec.save_trace(make_trace(losses, meter))
    rec.note(model_digest=model_digest(model))
    return summarize(history)


def train_epoch(epoch: int, inputs: TrainInputs, model: nn.Module, opt: torch.optim.Optimizer,
                losses: list[float]) -> dict[str, float]:
    """One pass over the training split; appends each iteration's loss to ``losses``."""
    from tqdm import tqdm

    data, device, loss_fn = inputs.data, inputs.device, inputs.task.loss_fn
    if hasattr(opt, "set_epoch"):
        opt.set_epoch(epoch)
    lr = float(opt.param_groups[0]["lr"])
    model.train()
    loss_sum = 0.0
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    t0 = time.perf_counter()
    bar = tqdm(data.train, total=len(data.train), desc=f"epoch {epoch + 1}/{inputs.config.epochs}",
               file=sys.stderr, disable=not inputs.progress, leave=False)
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
            loss, logits = train_step(opt, model, loss_fn, x, y)
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
