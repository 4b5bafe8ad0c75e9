"""Comparing two run stores cell by cell, on small stores copied from the miniature store."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.compare import AGREE, DIFFER, FEW, compare_stores, main, welch_interval

STORE = Path(__file__).parent / "data" / "store"


def _copy(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(STORE, dst)
    return dst


def _runs(store, **where):
    """Run dirs of completed runs whose config has the given values, by seed."""
    out = {}
    for d in sorted(p for p in store.iterdir() if p.is_dir()):
        run = json.loads((d / "run.json").read_text())
        config = run.get("info", {}).get("config", {})
        if run["status"] == "COMPLETED" and all(config.get(k) == v for k, v in where.items()):
            out[config["seed"]] = d
    return out


def _edit(run_dir, acc):
    path = run_dir / "run.json"
    run = json.loads(path.read_text())
    run["result"]["test_acc"] = acc
    run["info"]["model_digest"] = "edited"
    path.write_text(json.dumps(run))


def test_welch_interval_is_scipys():
    a, b = [91.0, 92.5, 90.8], [92.0, 93.9, 92.2, 93.0]
    diff, lo, hi = welch_interval(a, b)
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval()
    assert diff == pytest.approx(np.mean(b) - np.mean(a))
    assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_prediction_interval_is_the_t_interval_of_one_new_run():
    from benchmark.compare import prediction_interval

    v = [91.0, 92.5, 90.8]
    sd = np.std(v, ddof=1)
    expected = stats.t.interval(0.95, 2, loc=np.mean(v), scale=sd * np.sqrt(1 + 1 / 3))
    assert prediction_interval(v) == pytest.approx(expected)


def test_a_store_agrees_with_its_copy_bit_for_bit(tmp_path):
    c = compare_stores(STORE, _copy(tmp_path, "b"))
    assert c.cells and c.count(DIFFER) == 0 and c.only_a == c.only_b == 0
    assert c.identical_runs == c.same_runs > 0
    # the smoke store has cells where one of the two seeds failed or is missing: too few seeds
    assert c.count(AGREE) + c.count(FEW) == len(c.cells) and c.count(FEW) >= 1


def test_a_shifted_cell_differs_and_noise_within_the_spread_agrees(tmp_path):
    b = _copy(tmp_path, "b")
    mlp_lab = _runs(b, task="mnist-mlp", method="lab")
    accs = {s: json.loads((d / "run.json").read_text())["result"]["test_acc"]
            for s, d in mlp_lab.items()}
    for s, d in mlp_lab.items():
        _edit(d, accs[s] + 40.0)  # far outside any seed spread
    blaq = _runs(b, task="mnist-mlp", method="blaq", bits=1, m=1)
    vals = {s: json.loads((d / "run.json").read_text())["result"]["test_acc"]
            for s, d in blaq.items()}
    assert len(set(vals.values())) == 2  # a spread to hide in
    for s, d in blaq.items():
        _edit(d, vals[1 - s])  # the seeds swapped: other runs, the same cell statistics
    c = compare_stores(STORE, b)
    by = {(x.setting["task"], x.setting["method"], x.setting["bits"], x.setting["m"]): x
          for x in c.cells}
    shifted = [x for k, x in by.items() if k[:2] == ("mnist-mlp", "lab")]
    assert len(shifted) == 1 and shifted[0].verdict == DIFFER
    assert shifted[0].diff == pytest.approx(40.0) and shifted[0].lo > 0
    swapped = [x for k, x in by.items() if k[:3] == ("mnist-mlp", "blaq", 1) and k[3] == 1]
    assert len(swapped) == 1 and swapped[0].verdict == AGREE
    assert c.count(DIFFER) == 1
    assert c.same_runs - c.identical_runs == len(mlp_lab) + len(blaq)


def test_one_seed_is_too_few_and_a_missing_cell_is_counted(tmp_path):
    b = _copy(tmp_path, "b")
    mlp_fp = _runs(b, task="mnist-mlp", method="fp")
    shutil.rmtree(mlp_fp[1])
    for d in _runs(b, task="mnist-mlp", method="lab").values():
        shutil.rmtree(d)
    c = compare_stores(STORE, b)
    fp = [x for x in c.cells if x.setting["task"] == "mnist-mlp" and x.setting["method"] == "fp"]
    # one seed against two: the single run lies in A's prediction interval (it is A's seed 0)
    assert len(fp) == 1 and fp[0].b.n == 1 and fp[0].test == "prediction"
    assert fp[0].verdict == AGREE and fp[0].lo <= fp[0].diff <= fp[0].hi
    # one seed on both sides (LeNet5 fp: seed 1 is missing in the store): too few seeds
    few = [x for x in c.cells if x.verdict == FEW]
    assert few and all(x.a.n == 1 and x.b.n == 1 and x.lo is None for x in few)
    assert c.only_a == 1 and c.only_b == 0
    # a single run far from A's two: differs
    _edit(mlp_fp[0], 1.0e4)  # (the smoke store's two seeds are far apart: t(1) = 12.7)
    fp = [x for x in compare_stores(STORE, b).cells
          if x.setting["task"] == "mnist-mlp" and x.setting["method"] == "fp"]
    assert fp[0].verdict == DIFFER


def test_the_command_exit_status_and_summary(tmp_path, capsys):
    b = _copy(tmp_path, "b")
    assert main([str(STORE), str(b)]) == 0
    out = capsys.readouterr().out
    assert "agree within the seed spread" in out.splitlines()[-2]
    for d in _runs(b, task="mnist-mlp", method="lab").values():
        _edit(d, json.loads((d / "run.json").read_text())["result"]["test_acc"] + 40.0)
    assert main([str(STORE), str(b), "--only", "differ"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[1].startswith("mnist-mlp  lab") and lines[1].endswith(DIFFER)
    assert main([str(STORE), str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a run store" in err and err.count("\n") == 1
    assert main([str(STORE), str(b), "--metric", "accuracy"]) == 2
    assert "not a result column" in capsys.readouterr().err


def test_hooked_into_a_parser(tmp_path, capsys):
    import argparse

    from benchmark.compare import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["compare-stores", str(STORE), str(_copy(tmp_path, "b"))])
    assert args.handler(args) == 0
    assert "bit-identical" in capsys.readouterr().out


def test_compare_stores_is_a_runs_subcommand(capsys):
    from benchmark.cli import main

    store = str(Path(__file__).parent / "data" / "store")
    assert main(["runs", "compare-stores", store, store]) == 0
    out = capsys.readouterr().out
    assert "bit-identical" in out and " 0 differ" in out
