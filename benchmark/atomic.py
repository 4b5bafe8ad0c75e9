"""Atomic file writes for the outputs: a temporary file beside the target, then a rename, so a
kill mid-write leaves the old file or the new one, never half a file (as the store's JSON)."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the first error behind the cleanup's
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure_atomic(fig: Any, path: Path, **savefig: Any) -> None:
    """``fig.savefig(path, **savefig)``, atomically (the format from the file's suffix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip("."), **savefig)
    write_bytes_atomic(path, buf.getvalue())
