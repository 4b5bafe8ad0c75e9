"""What a run records about where it ran: versions, device, threads, code version, model digest."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import benchmark


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


def model_digest(model: nn.Module) -> str:
    """sha256 of the model's state (names and bytes): equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
