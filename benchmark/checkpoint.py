"""Exact resume: seeding, the capture and restore of every random state a run draws from, and
epoch checkpoints written atomically (``_checkpoints/<run_id>.pt`` in the run store)."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from benchmark.tasks import Data

CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the global generator is what third-party code draws from
    torch.manual_seed(seed)


def _data_generator(data: Data) -> torch.Generator | None:
    """The generator that draws the training order, when the train split exposes one."""
    gen = getattr(data.train, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


def rng_state(data: Data) -> dict[str, Any]:
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


def set_rng_state(state: dict[str, Any], data: Data) -> None:
    """Restore what ``rng_state`` captured (the data order's generator included)."""
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


class MachineFault(OSError):
    """An I/O error of the machine (a full or read-only disk, a failing device) while a run saves
    its state. It says nothing about the configuration, so the run store records the run
    INTERRUPTED, not FAILED: it stays incomplete and resumes from its last good checkpoint when
    run again."""


class CheckpointDiscarded(RuntimeWarning):
    """A checkpoint of the right run id that no longer fits the run (e.g. left by an older model
    definition: the run id does not hash the code) was deleted and the run restarted."""


def stale_temporaries(path: Path) -> list[Path]:
    """The temporary files that ``save_checkpoint(path, ...)`` leaves when killed mid-save."""
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def remove_stale_temporaries(path: Path) -> int:
    """Delete them (call it holding the run's lock: then no other process is saving); how many."""
    removed = 0
    for tmp in stale_temporaries(path):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a kill never leaves half a
    file, and a failed save leaves no temporary. An OSError (disk full, read-only, I/O error) is
    raised as MachineFault, keeping the previous checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        buffer = io.BytesIO()  # serialised first: torch's writer reports a full disk as a
        torch.save(payload, buffer)  # RuntimeError, a plain write as the OSError it is
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise MachineFault(f"cannot save the checkpoint {path}: {err.strerror or err}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def discard(path: Path, reason: str) -> None:
    """Delete an unusable checkpoint, with a warning that says why."""
    warnings.warn(f"checkpoint {path} does not fit this run ({reason}); deleted, the run "
                  "starts from scratch", CheckpointDiscarded, stacklevel=2)
    with contextlib.suppress(OSError):
        path.unlink()


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
