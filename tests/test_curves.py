"""Per-run measures on the per-epoch curves: hand-made curves, and the committed miniature store
read directly from its metrics.json files."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.curves import auc, reach, with_active_epochs, with_convergence
from benchmark.specs import SPECS

DATA = Path(__file__).parent / "data"


def test_reach_finds_the_first_epoch_at_or_below_the_target():
    loss = np.array([1.0, 0.5, 0.3, 0.3, 0.2])
    wall = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert reach(loss, wall, 0.3) == (3, 3.0, True)   # the first of the tied epochs
    assert reach(loss, wall, 1.0) == (1, 1.0, True)
    # never reached: one epoch more than the run, and its time plus one mean epoch
    assert reach(loss, wall, 0.1) == (6, pytest.approx(6.0), False)


def test_auc_is_the_mean_height_of_the_curve():
    assert auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert auc(np.array([2.0, 1.0, 1.0])) == pytest.approx((1.5 + 1.0) / 2)
    assert auc(np.array([0.7])) == 0.7
    assert auc(np.full(10, 0.3)) == pytest.approx(0.3)  # a flat curve: its height


def _metric(rid, name):
    metrics = json.loads((DATA / "store" / rid / "metrics.json").read_text())
    return np.array(metrics[name]["values"], dtype=float)


def test_convergence_columns_are_the_stores_curves(monkeypatch):
    monkeypatch.chdir(DATA)
    res = with_convergence(SPECS["table7"].results("store", "smoke", (0, 1)))
    f = res.frame[res.frame.status == "completed"]
    pairs = 0
    for _, rows in f.groupby(["task", "seed"]):
        laq = rows[rows.method == "laq"].iloc[0]
        blaq = rows[rows.method == "blaq"].iloc[0]
        lloss, bloss = _metric(laq.run_id, "train_loss"), _metric(blaq.run_id, "train_loss")
        target = lloss.min()
        assert laq.conv_target == blaq.conv_target == pytest.approx(target)
        assert laq.conv_epochs == int(np.argmin(lloss)) + 1
        hit = np.flatnonzero(bloss <= target)
        assert blaq.conv_epochs == (hit[0] + 1 if hit.size else bloss.size + 1)
        assert bool(blaq.conv_reached) == bool(hit.size)
        wall = _metric(blaq.run_id, "wall_time")
        if hit.size:
            assert blaq.conv_seconds == pytest.approx(wall[hit[0]])
        assert blaq.conv_auc == pytest.approx(np.trapezoid(bloss) / (bloss.size - 1))
        pairs += 1
    assert pairs == 4  # two tasks x two seeds


def test_active_epoch_means_take_blaqs_active_epochs_for_both_methods(monkeypatch):
    monkeypatch.chdir(DATA)
    res = with_active_epochs(SPECS["table1"].results("store", "smoke", (0, 1)), ("zz_cosine",))
    f = res.frame[res.frame.status == "completed"]
    for seed in (0, 1):
        rows = f[f.seed == seed]
        blaq = rows[rows.method == "blaq"].iloc[0]
        active = np.flatnonzero(_metric(blaq.run_id, "blaq_active") > 0.5)
        assert active.size  # smoke runs BLAQ with m = 1: every epoch
        for _, r in rows.iterrows():
            expected = _metric(r.run_id, "zz_cosine")[active].mean()
            assert r.zz_cosine_active == pytest.approx(expected)


def test_a_missing_epoch_is_counted_by_its_number_not_its_position():
    loss = np.array([1.0, 0.5, 0.3, 0.2])
    wall = np.array([1.0, 2.0, 4.0, 5.0])
    epochs = np.array([1, 2, 4, 5])  # epoch 3 has no value
    assert reach(loss, wall, 0.3, epochs) == (4, 4.0, True)
    assert reach(loss, wall, 0.1, epochs) == (6, pytest.approx(6.0), False)
    # the gap is bridged: [1,2] 0.75, [2,4] 2 x 0.4, [4,5] 0.25, over a span of 4
    assert auc(loss, epochs) == pytest.approx((0.75 + 0.8 + 0.25) / 4)
    assert auc(loss, np.arange(1, 5)) == auc(loss)  # numbered 1, 2, ... is the default


def test_two_runs_of_one_method_for_a_pair_are_refused(monkeypatch):
    import dataclasses

    import pandas as pd

    from benchmark.errors import UserError

    monkeypatch.chdir(DATA)
    res = SPECS["table7"].results("store", "smoke", (0, 1))
    f = res.frame
    twin = f[(f.method == "blaq") & (f.status == "completed")].iloc[[0]].copy()
    twin["run_id"] = "0" * 16  # another BLAQ setting's run, same task, bits and seed
    doubled = dataclasses.replace(res, frame=pd.concat([f, twin], ignore_index=True))
    with pytest.raises(UserError, match="two blaq runs for task"):
        with_convergence(doubled)
    with pytest.raises(UserError, match="two blaq runs for task"):
        with_active_epochs(doubled, ("zz_cosine",))


def test_an_entrys_setting_tells_blaq_variants_apart(monkeypatch):
    """BLAQ's blend and kept moments are part of an entry's setting, so a table of variants can
    select them (LAQ entries have none)."""
    monkeypatch.chdir(DATA)
    res = SPECS["table7"].results("store", "smoke", (0, 1))
    blaq = res.select(method="blaq")
    assert blaq and res.select(method="blaq", blend="moment", keep_moments="blended") == blaq
    assert res.select(blend="gradient") == []
    assert all(res.setting(e)["blend"] is None for e in res.select(method="laq"))
