"""The Slurm tests' cluster: a real one-node Slurm cluster with accounting, started from the
project's scripts (scripts/slurm/) once per session and stopped afterwards.

Where it cannot be started (not root, not Debian/Ubuntu with apt, no submitit) the tests skip
with the reason; ``BLAQ_REQUIRE_SLURM=1`` (tox -e slurm, .ci/run) turns that into a failure. A
cluster that was already running when the session began is used and left running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "slurm"
START_TIMEOUT_S = 900  # install (apt) and start; bounds a hang only


def _cannot_run() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the Slurm tests need Linux"
    if os.geteuid() != 0:
        return "the Slurm tests start a one-node cluster, which needs root"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install -e '.[slurm]')"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("BLAQ_REQUIRE_SLURM") == "1":
        pytest.fail(f"BLAQ_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _running() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the cluster (installing its packages if needed); yields the node's CPU count."""
    reason = _cannot_run()
    if reason:
        _unavailable(reason)
    already = _running()
    if not already:
        for script in ("install.sh", "start.sh"):
            proc = subprocess.run([str(SCRIPTS / script)], capture_output=True, text=True,
                                  timeout=START_TIMEOUT_S)
            if proc.returncode != 0:
                _unavailable(f"scripts/slurm/{script} failed: "
                             f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    info = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True)
    cpus = int(info.stdout.split()[0].rstrip("+"))
    try:
        yield cpus
    finally:
        if not already:
            subprocess.run([str(SCRIPTS / "stop.sh")], capture_output=True, timeout=300)
