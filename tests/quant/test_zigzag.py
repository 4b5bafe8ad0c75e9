"""ZigZagMeter: hand-computed metrics on tiny weight sequences, the bounded trace, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from benchmark.quant.zigzag import SUMMARY_KEYS, ZigZagMeter

# Four weights split over two layers (levels in units of 1/n, n = 3, alpha = 0.5 throughout):
#   b0 = [ 1, -1,  0,  1]
#   b1 = [-1, -1,  1,  1]   u0 = [-2,  0,  1,  0]   first step: cosine and flip rate undefined
#   b2 = [ 1,  0,  1,  1]   u1 = [ 2,  1,  0,  0]   cos = -4/5, flips 1 of 1, w0 oscillates (jump 2)
#   b3 = [-1,  1,  0,  1]   u2 = [-2,  1, -1,  0]   cos = -3/sqrt(30), flips 1 of 2,
#                                                  w0 oscillates (2), w2 oscillates (1; its last
#                                                  change was step 1's +1)
LEVELS = [
    [1, -1, 0, 1],
    [-1, -1, 1, 1],
    [1, 0, 1, 1],
    [-1, 1, 0, 1],
]
N = 3
ALPHA = torch.tensor(0.5)


def _layers(levels: list[int]) -> list[torch.Tensor]:
    b = torch.tensor(levels, dtype=torch.float32) / N
    return [b[:2].clone(), b[2:].clone()]


def _feed(meter: ZigZagMeter, sequence: list[list[int]]) -> None:
    for old, new in zip(sequence, sequence[1:], strict=False):
        b_old, b_new = _layers(old), _layers(new)
        w_first = b_new[0] * 0.9  # stands in for the full-precision weights of the first layer
        meter.update([ALPHA, ALPHA], b_old, [ALPHA, ALPHA], b_new, [N, N], w_first)


def test_hand_computed_summary() -> None:
    meter = ZigZagMeter()
    _feed(meter, LEVELS)
    summary = meter.epoch_summary()
    assert set(summary) == set(SUMMARY_KEYS)
    assert summary["zz_cosine"] == pytest.approx((-0.8 - 3 / math.sqrt(30)) / 2, rel=1e-6)
    assert summary["zz_flip_rate"] == pytest.approx(0.75, rel=1e-6)
    # events: w0 at steps 2 and 3 (jumps of 2 levels), w2 at step 3 (1 level)
    assert summary["zz_osc_amplitude"] == pytest.approx(5 / 3, rel=1e-6)
    # EMA with momentum 0.99: w0 = 0.99 * 0.01 + 0.01, w2 = 0.01, the others 0
    assert summary["zz_osc_freq"] == pytest.approx((0.0199 + 0.01) / 4, rel=1e-5)
    assert summary["zz_osc_share"] == pytest.approx(0.25)  # only w0 is above 0.01


def test_hand_computed_trace() -> None:
    meter = ZigZagMeter(n_tracked=2)
    _feed(meter, LEVELS)
    trace = meter.pop_trace()
    np.testing.assert_array_equal(trace["iteration"], [1, 2, 3])
    np.testing.assert_allclose(trace["cosine"], [np.nan, -0.8, -3 / math.sqrt(30)], rtol=1e-6)
    np.testing.assert_allclose(trace["flip_rate"], [np.nan, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(trace["osc_rate"], [0.0, 0.25, 0.5], rtol=1e-6)
    # tracked coordinates of the first layer: both of its two weights
    expected_hat = 0.5 * np.array([r[:2] for r in LEVELS[1:]], dtype=np.float32) / N
    np.testing.assert_allclose(trace["traj_w_hat"], expected_hat, rtol=1e-6)
    np.testing.assert_allclose(trace["traj_w"], expected_hat / 0.5 * 0.9, rtol=1e-6)
    assert meter.pop_trace()["iteration"].size == 0  # popped


def test_scale_changes_count_as_updates() -> None:
    """With the levels fixed, w_hat still moves when alpha does: +1 then -1 is a full reversal."""
    meter = ZigZagMeter()
    b = [torch.ones(3)]
    for a0, a1 in ((1.0, 2.0), (2.0, 1.0)):
        meter.update([torch.tensor(a0)], b, [torch.tensor(a1)], b, [1])
    summary = meter.epoch_summary()
    assert summary["zz_cosine"] == pytest.approx(-1.0)
    assert summary["zz_flip_rate"] == pytest.approx(1.0)
    assert math.isnan(summary["zz_osc_amplitude"])  # no level changed: no oscillation event
    assert summary["zz_osc_freq"] == 0.0


def test_summary_resets_per_epoch_but_frequency_carries_over() -> None:
    meter = ZigZagMeter()
    _feed(meter, LEVELS)
    first = meter.epoch_summary()
    _feed(meter, [LEVELS[-1], LEVELS[-1]])  # one step without any change
    second = meter.epoch_summary()
    assert math.isnan(second["zz_cosine"])  # this epoch's only update is zero
    assert math.isnan(second["zz_osc_amplitude"])
    assert second["zz_osc_freq"] == pytest.approx(first["zz_osc_freq"] * 0.99, rel=1e-5)
    assert math.isnan(ZigZagMeter().epoch_summary()["zz_cosine"])


def test_trace_is_bounded_and_evenly_decimated() -> None:
    full, small = ZigZagMeter(), ZigZagMeter(max_trace=4)
    gen = torch.Generator().manual_seed(0)
    seq = [torch.randint(-1, 2, (4,), generator=gen).tolist() for _ in range(11)]
    _feed(full, seq)
    _feed(small, seq)
    a, b = full.pop_trace(), small.pop_trace()
    # strides 1 -> 2 -> 4 as the buffer of 4 fills: iterations 1, 5, 9 of 10
    np.testing.assert_array_equal(b["iteration"], [1, 5, 9])
    for key in ("cosine", "flip_rate", "osc_rate", "traj_w_hat"):
        np.testing.assert_array_equal(b[key], a[key][[0, 4, 8]])


def test_state_dict_round_trip_continues_identically() -> None:
    a = ZigZagMeter()
    _feed(a, LEVELS[:3])
    b = ZigZagMeter()
    b.load_state_dict(a.state_dict())
    _feed(a, LEVELS[2:])
    _feed(b, LEVELS[2:])
    assert a.epoch_summary() == pytest.approx(b.epoch_summary(), nan_ok=True)
    ta, tb = a.pop_trace(), b.pop_trace()
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key])


def test_bad_settings_raise_user_error() -> None:
    with pytest.raises(UserError, match="momentum"):
        ZigZagMeter(momentum=1.0)
    with pytest.raises(UserError, match="max_trace"):
        ZigZagMeter(max_trace=1)
