"""Everything a grid needs, checked before anything is written.

A command that cannot finish must say so before it trains for an hour: an output folder that
cannot take the tables, a run store that cannot be written, a data root that is a file, data
that is missing or corrupt in the paper profile. Each check raises UserError (one line, exit
status 2 at the command line) and writes nothing: no store, no output folder, no data cache.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import UserError


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (``path`` itself when it does)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable(folder: Path) -> bool:
    """True if a file can be created in the existing folder ``folder`` (probed for real: root
    writes through permission bits, not through a read-only file system)."""
    probe = folder / f".blaq-probe-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        with open(probe, "x"):
            pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def check_folder(path: Path, what: str) -> None:
    """``path`` is (or can be created as) a writable folder; UserError naming ``what`` if not.

    Nothing is created: a missing folder is judged by the nearest existing folder above it.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{what}: {parent} is a file, not a folder")
    base = _existing_ancestor(path)
    if not writable(base):
        if base == Path(os.path.abspath(path)):
            raise UserError(f"{what}: {path} is not writable (read-only or no permission)")
        raise UserError(f"{what}: cannot create {path}: {base} is not writable "
                        f"(read-only or no permission)")


def check_outputs(out_root: Path, profile: str) -> None:
    """The folders that the tables and figures of ``profile`` go to can be written."""
    for kind in ("tables", "figures"):
        folder = out_root / kind if profile == "quick" else out_root / kind / profile
        check_folder(folder, "--out-dir")


def check_store_writable(runs_dir: Path) -> None:
    """A store (existing or to be created) at ``runs_dir`` can take new runs."""
    check_folder(Path(runs_dir), "--runs-dir")


def check_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The resolved data root; UserError if it exists and is not a folder."""
    from benchmark.tasks import resolve_data_root

    root = resolve_data_root(data_root)
    for parent in (root, *root.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"data root {root}: {parent} is a file, not a folder; "
                            "pass --data-root DIR (or $BLAQ_DATA_ROOT) naming a folder")
    return root


def check_data(tasks: Iterable[tuple[str, str]], data_root: str | os.PathLike[str] | None,
               download: bool = False) -> None:
    """Load each (task, profile)'s data once, here, so that missing or corrupt files are found
    before the store is opened (a UserError naming the files and how to get them). The loaders
    fill the data cache as they go, which the runs then read; they write nothing on a failure.
    """
    from benchmark.tasks import get_task

    root = check_data_root(data_root)
    for task, profile in dict.fromkeys(tasks):
        get_task(task).load_data(profile, root, download=download)
