"""The method library's two hand-written kernels, loaded through ctypes: LAT exact's bin sums
(``lat_bins.c``) and the zig-zag meter's pass over +-1 levels (``zigzag.c``).

Inductor writes the compiled path's other kernels. For LAT exact's 16 bin sums it vectorises
each as its own float64 accumulation, and the pass took three times the Adam update it is fused
with. ``lat_bins.c`` accumulates them in float32 over short runs of values (a rounding bound
the proof allows for), adds the runs in double, and hands back the window's values and their d
with the sums: ``lat_bins`` in one read of w and d, ``lat_step`` with the LAQ step's Adam
update in the same pass (the compiled update's arithmetic), ``lat_bins_v`` from w and v (D
computed as ``lat_step`` computes it) and ``lat_curvature`` that D alone. ``zigzag.c``'s
``zz_binary`` updates the meter's packed state as the compiled pass does and counts what the
step's sums follow from (``zigzag._binary_sums``); inductor's pass took twice as long.

Each is built on first use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) for this CPU into a cache directory, keyed by its source, flags and the CPU's
features (``$BLAQ_NATIVE_CACHE``, default ``~/.cache/blaq-benchmark``); where one cannot be
built, its caller uses inductor's kernel instead (``BLAQ_NATIVE=0`` forces that for both).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("lat_bins.c")
_ZIGZAG_SOURCE = Path(__file__).with_name("zigzag.c")
ZIGZAG_LAYOUT = 1  # zz_layout() of the zigzag.c this module expects
# no contraction into fused multiply-adds and no reordering: the rounding bound rests on the
# operations as written (-fno-math-errno only lets sqrt be a vector instruction)
_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off",
          "-fno-math-errno")
_NATIVE = ("-march=native",)  # the vector width of this CPU (else the compiler's default)


def _machine() -> bytes:
    """What the build depends on besides its source and flags: the CPU's features (a cache
    directory shared by machines with other CPUs keeps one build per CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.encode()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".encode()


def _compiler() -> list[str] | None:
    """The compiler's command: ``$CC`` (which may carry words, as ``ccache gcc``), else the
    first of cc, gcc and clang on the PATH."""
    try:
        named = shlex.split(os.environ.get("CC", ""))
    except ValueError:  # unbalanced quotes: $CC as one name
        named = [os.environ["CC"]]
    if named and shutil.which(named[0]):
        return named
    if os.environ.get("CC") and shutil.which(os.environ["CC"]):  # a path with a space
        return [os.environ["CC"]]
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    return None


def _cache_dir() -> Path:
    root = os.environ.get("BLAQ_NATIVE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "blaq-benchmark"


@functools.cache
def lat_bins(edges: int, below: int) -> tuple[ctypes.CDLL | None, str | None]:
    """``lat_bins.c`` for this bin layout: (the library, None), or (None, why not) where it
    cannot be built or loaded here."""
    lib, reason = _library(_SOURCE, (f"-DLAT_EDGES={edges}", f"-DLAT_BELOW={below}"),
                           "lat_bins_layout", edges * 100 + below * 10 + 1)
    if lib is None:
        return None, reason
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.lat_bins.argtypes = [p, p, i64, p, p, p, p, i64]
    lib.lat_bins.restype = i64
    f32 = ctypes.c_float
    lib.lat_step.argtypes = [p, p, p, p, i64, f32, f32, f32, f32, f32, p, p, p, p, i64]
    lib.lat_step.restype = i64
    lib.lat_bins_v.argtypes = [p, p, i64, f32, p, p, p, p, i64]
    lib.lat_bins_v.restype = i64
    lib.lat_curvature.argtypes = [p, i64, f32, p]
    lib.lat_curvature.restype = None
    lib.lat_bins_chunk.restype = i64
    lib.lat_bins_lanes.restype = i64
    return lib, None


@functools.cache
def zigzag() -> tuple[ctypes.CDLL | None, str | None]:
    """``zigzag.c`` (the compiled zig-zag meter's pass over +-1 levels): (the library, None), or
    (None, why not)."""
    lib, reason = _library(_ZIGZAG_SOURCE, (), "zz_layout", ZIGZAG_LAYOUT)
    if lib is None:
        return None, reason
    p, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.zz_binary.argtypes = [p, p, p, i64, f32, f32, f32, f32, f32, f32, p]
    lib.zz_binary.restype = None
    return lib, None


def pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """A kept pool of ``workers`` threads for the kernels' pieces of a large layer (the calls
    release the GIL), one per process (a forked child's copy of its parent's pool has no
    threads)."""
    return _process_pool(workers, os.getpid())


@functools.cache
def _process_pool(workers: int, pid: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="blaq-native")


def written(*tensors) -> None:
    """Bumps the tensors' version counters after a kernel wrote them through a pointer (a write
    torch did not see, so that checks of a tensor's version see it)."""
    bump = getattr(torch.autograd.graph, "increment_version", None)
    for t in tensors:
        (bump or torch._C._increment_version)(t)


def _library(source_path: Path, defines: tuple[str, ...], layout: str, expected: int
             ) -> tuple[ctypes.CDLL | None, str | None]:
    """The library built from ``source_path`` with ``defines`` (cached), checked by its function
    ``layout`` returning ``expected``; or (None, why not)."""
    if os.environ.get("BLAQ_NATIVE", "1") == "0":
        return None, "BLAQ_NATIVE=0"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (set CC)"
    flags = (*_FLAGS, *defines)
    try:
        source = source_path.read_bytes()
    except OSError as exc:
        return None, f"no kernel source: {exc}"
    key = hashlib.sha256(b"\0".join([source, *map(str.encode, cc), *map(str.encode, flags),
                                     sys.platform.encode(), _machine()])).hexdigest()[:20]
    target = _cache_dir() / f"{source_path.stem}-{key}.so"
    # a cached file that does not load is built again, once, under a name of its own (the
    # loader would hand back a library already loaded from the same name), then put in place
    for path in (target, target.with_name(f"{target.stem}-{os.getpid()}.so")):
        if path != target or not target.exists():
            reason = _build(cc, flags, path, source_path)
            if reason is not None:
                return None, reason
        try:
            lib = ctypes.CDLL(str(path))
            if getattr(lib, layout)() == expected:
                if path != target:
                    with contextlib.suppress(OSError):  # the next process builds it again
                        os.replace(path, target)
                return lib, None
            reason = f"{path} has another layout"
        except (OSError, AttributeError) as exc:
            reason = f"could not load {path}: {exc}"
        if path != target:
            with contextlib.suppress(OSError):
                path.unlink()
    return None, reason


def _build(cc: list[str], flags: tuple[str, ...], target: Path, source: Path) -> str | None:
    """Builds ``source`` into the library at ``target``; returns None, or why it could not."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # build beside the target and rename: processes building at once never load a
        # half-written library
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            for extra in (_NATIVE, ()):  # a compiler without -march=native: its default
                done = subprocess.run([*cc, *flags, *extra, "-o", tmp, str(source)],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode == 0:
                    os.replace(tmp, target)
                    return None
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            return f"{' '.join(cc)} could not build {source.name}: {reason}"
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not build {source.name}: {exc}"
