"""Shared test configuration: tests marked ``cuda`` skip without a GPU, or fail when one is required.

Set ``BLAQ_REQUIRE_CUDA=1`` (the tox gpu env does) to turn a missing GPU into a failure, so a GPU
job cannot pass by skipping everything.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

# Small tensors run faster on one thread, and the suite's timings do not depend on the machine's
# load; runs started in subprocesses choose their own threads.
torch.set_num_threads(1)

# A pytest started in the background of a non-interactive shell (``pytest &`` in a script) has
# SIGINT ignored, and every process a test starts would inherit that: the tests that stop a grid
# with Ctrl-C would wait for a child that cannot be interrupted. Python's own handler, restored
# here, is what a child gets back at exec (a handled signal is reset to its default there).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None or torch.cuda.is_available():
        return
    if os.environ.get("BLAQ_REQUIRE_CUDA") == "1":
        pytest.fail("BLAQ_REQUIRE_CUDA=1 but torch.cuda.is_available() is False", pytrace=False)
    pytest.skip("needs a CUDA device")
