"""Shared test configuration: tests marked ``cuda`` skip without a GPU, or fail when one is required.

Set ``BLAQ_REQUIRE_CUDA=1`` (the tox gpu env does) to turn a missing GPU into a failure, so a GPU
job cannot pass by skipping everything.
"""

from __future__ import annotations

import os

import pytest
import torch

# Small tensors run faster on one thread, and the suite's timings do not depend on the machine's
# load; runs started in subprocesses choose their own threads.
torch.set_num_threads(1)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None or torch.cuda.is_available():
        return
    if os.environ.get("BLAQ_REQUIRE_CUDA") == "1":
        pytest.fail("BLAQ_REQUIRE_CUDA=1 but torch.cuda.is_available() is False", pytrace=False)
    pytest.skip("needs a CUDA device")
