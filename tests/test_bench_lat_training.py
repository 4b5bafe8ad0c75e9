"""``benchmarks/lat_training.py`` refuses bad input with a one-line reason and status 2 (its
training itself compiles and runs for minutes: it is a benchmark, run by hand)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lat_training  # noqa: E402


def test_bad_input_is_a_one_line_reason_and_status_2(capsys):
    for argv in (["--epochs", "0"], ["--images", "99"], ["--images", "5001"], ["--bits", "1"]):
        assert lat_training.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lat_training: ") and len(err.strip().splitlines()) == 1, err
