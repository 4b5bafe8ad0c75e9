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

import dataclasses
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.checkpoint import (  # noqa: F401
    CHECKPOINT_FORMAT,
    MachineFault,
    load_checkpoint,
    save_checkpoint,
)
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.locks import RunBusyError, RunLock
from benchmark.methods import all_option_names
from benchmark.provenance import code_version, environment, model_digest  # noqa: F401
from benchmark.store import (
    check_store,
    checkpoint_path,
    open_store,
    read_run,
    run_dir,
    write_json_atomic,
)
from benchmark.torch_settings import DEVICES, check_threads, resolve_device, torch_settings  # noqa: F401
from benchmark.train import (  # noqa: F401  (re-exported: the loop's helpers lived here)
    Recorder,
    TrainingDiverged,
    TrainInputs,
    decimated_iterations,
    make_optimizer,
    make_trace,
    summarize,
)
from benchmark.train import train as train_loop

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, which warns on every start
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from sacred import Experiment
    from sacred.observers import FileStorageObserver
    from sacred.run import Run
    from sacred.serializer import flatten
    from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds

EXIT_STATUS = {"completed": 0, "cached": 0, "failed": 1, "incomplete": 1, "busy": 3}

# settings that do not change the numbers: part of the Sacred config, not of the run id
SETTINGS: dict[str, Any] = {
    "device": "auto",
    "data_root": None,
    "download": False,
    "runs_dir": "runs",
    "threads": None,
    "progress": False,
}
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))  # and the methods' options


@dataclass(frozen=True)
class RunOutcome:
    """What ``run_config`` did: ``completed`` (trained now), ``cached``, ``failed``, ``busy``, or
    ``incomplete`` (the machine failed it, e.g. a full disk: it resumes when run again)."""

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

    inputs: TrainInputs
    runs_dir: Path


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
        run_keys = {*RUN_FIELDS, *all_option_names()}
        unknown = sorted(set(updates) - run_keys - set(SETTINGS))
        if unknown:
            raise UserError(f"unknown setting(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(sorted(run_keys - {'options'} | set(SETTINGS)))}")
        settings = {**SETTINGS, **{k: v for k, v in updates.items() if k in SETTINGS}}
        config = RunConfig.from_dict({k: v for k, v in updates.items() if k in run_keys}).resolved()
        device = resolve_device(settings["device"])
        threads = check_threads(settings["threads"])
        runs_dir = Path(str(settings["runs_dir"]))
        rid = config.run_id
        if check_store(runs_dir):
            cached = _cached_outcome(runs_dir, rid)
            if cached is not None:
                return cached, None
        with torch_settings(device, threads):
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
                inputs = TrainInputs(config, task, profile, data, device,
                                     checkpoint_path(runs_dir, rid), bool(settings["progress"]))
                return self._train_in_sacred(
                    _Prepared(inputs, runs_dir),
                    # the run's fields (its profile's settings are in info["config"], hashed in the id)
                    {**config.flat(), **settings, "device": str(device),
                     "runs_dir": str(runs_dir)},
                    options,
                )
            finally:
                lock.release()

    def _train_in_sacred(self, prepared: _Prepared, sacred_config: dict[str, Any],
                         options: dict[str, Any]) -> tuple[RunOutcome, Run | None]:
        inputs = prepared.inputs
        rid = inputs.config.run_id
        options = dict(options)
        options["--id"] = rid
        options["--capture"] = options.get("--capture") or "sys"
        options["--loglevel"] = options.get("--loglevel") or ("INFO" if inputs.progress else "WARNING")
        observers = self.observers
        self.observers = [StoreObserver(prepared.runs_dir)]
        self._prepared = prepared
        path = run_dir(prepared.runs_dir, rid)
        try:
            # the info is complete before Sacred's heartbeat thread first reads it; the run only
            # rebinds run.info (never mutates it), so the thread never sees a dict change size
            info = {"run_id": rid, "config": inputs.config.key(), "data": dict(inputs.data.info),
                    "env": environment(inputs.device)}
            sacred_run = super().run(config_updates=sacred_config, info=info, options=options)
        except _MachineInterrupt as err:  # the machine's fault, not the config's: resumes when rerun
            return RunOutcome(rid, "incomplete", None, f"{err} (run again to resume)", path), None
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
ex.add_config({**{k: v for k, v in RunConfig().__dict__.items() if k != "options"}, **SETTINGS,
               # None is "the default for this task and method", like "auto" (see RunConfig)
               "scheme": None, **dict.fromkeys(all_option_names())})


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


class _SacredRecorder(Recorder):
    """The loop's reports, recorded in the Sacred run (and so in the run store)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.run.log_scalar(name, value, step)

    def note(self, **info: Any) -> None:
        # rebinds run.info (never mutates it): Sacred's heartbeat thread never sees a dict change size
        self.run.info = {**self.run.info, **info}

    def save_trace(self, trace: dict[str, np.ndarray]) -> None:
        """The per-iteration trace as the artifact ``trace.npz`` (written even when the run fails)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.npz"
            np.savez_compressed(path, **trace)
            self.run.add_artifact(str(path), "trace.npz")


@ex.main
def train(_run: Run) -> dict[str, Any]:
    """Sacred's main command: the training loop on the inputs ``run_in_store`` prepared."""
    prepared = ex._prepared
    if prepared is None:
        raise RuntimeError("start runs with run_config() or the command line, not ex.run() directly")
    try:
        return train_loop(prepared.inputs, _SacredRecorder(_run))
    except MachineFault as err:
        raise _MachineInterrupt(str(err)) from err


class _MachineInterrupt(SacredInterrupt):
    """A MachineFault as Sacred records it: INTERRUPTED (the run resumes), not FAILED."""

    STATUS = "INTERRUPTED"


if __name__ == "__main__":
    ex.run_commandline()
