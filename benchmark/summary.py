"""A run's result from its per-epoch history, and the names of its keys (torch-free: the store's
readers and the command line import it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

RESULT_KEYS = ("test_acc", "final_test_acc", "best_val_acc", "best_epoch", "final_train_loss",
               "train_time_s", "epochs")
# the zig-zag meter's epoch summaries (benchmark.quant.zigzag.SUMMARY_KEYS, which imports torch;
# a test pins the two equal), averaged over the epochs where they are defined
ZIGZAG_KEYS = ("zz_cosine", "zz_flip_rate", "zz_osc_freq", "zz_osc_share", "zz_osc_amplitude")


def summarize(history: dict[str, list[float]]) -> dict[str, Any]:
    """The run's result from its per-epoch history (docs/design.md): best-val selection, ties ->
    earliest; ``RESULT_KEYS`` and the ``zz_`` summaries the history has."""
    val = history["val_acc"]
    best = int(np.argmax(val))  # the first of equal maxima
    result: dict[str, Any] = {
        "test_acc": history["test_acc"][best],
        "final_test_acc": history["test_acc"][-1],
        "best_val_acc": val[best],
        "best_epoch": best + 1,
        "final_train_loss": history["train_loss"][-1],
        "train_time_s": history["wall_time"][-1],
        "epochs": len(val),
    }
    for key in (k for k in history if k.startswith("zz_")):
        finite = [v for v in history[key] if math.isfinite(v)]
        result[key] = float(np.mean(finite)) if finite else None
    return result
