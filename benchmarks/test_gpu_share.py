"""The GPU benchmark (``gpu_share.py``) under pytest: skipped without a GPU.

    python -m pytest benchmarks/test_gpu_share.py --benchmark-only -s

One benchmark per model (every optimizer of ``gpu_share.optimizers()`` in it); the table of
step times, quantizer shares and BLAQ/LAQ ratios is printed at the end of the run.
"""

from __future__ import annotations

import time

import gpu_share
import pytest
import torch

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.benchmark(timer=time.perf_counter, group="gpu"),
]


@pytest.mark.parametrize("model_name", list(gpu_share.MODELS))
def test_gpu_share(benchmark, model_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = benchmark.pedantic(gpu_share.run, ([model_name], 20), rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    assert {r["optimizer"] for r in rows} == set(gpu_share.optimizers())
    assert all(r["step_ms"] > 0 for r in rows)
    with capsys.disabled():
        print("\n" + "\n".join(gpu_share.table(rows)))
