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


# --- the compiled meter (compile=True): packed state, updates recomputed from kept levels ------

def _random_steps(count: int, shapes=((16, 12), (5, 16)), levels: int = 3, seed: int = 2):
    """(alpha_old, b_old, alpha_new, b_new) per step, each step's levels in tensors of their own
    (as a caller that keeps them: nothing is overwritten)."""
    gen = torch.Generator().manual_seed(seed)

    def draw():
        b = [torch.randint(-levels, levels + 1, s, generator=gen).float() / levels for s in shapes]
        return [torch.rand((), generator=gen) + 0.1 for _ in shapes], b

    steps, (a, b) = [], draw()
    for _ in range(count):
        a_new, b_new = draw()
        if _ % 3 == 2:  # some steps move the scale only
            b_new = [x.clone() for x in b]
        steps.append((a, b, a_new, b_new))
        a, b = a_new, b_new
    return steps


def _run(meter: ZigZagMeter, steps, kept: bool = False) -> None:
    for a, b, a_new, b_new in steps:
        meter.update(a, b, a_new, b_new, [3, 3], b_new[0], levels_kept=kept)


def _assert_summaries_close(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key


def _compiled_meter_tests_can_run() -> None:
    from benchmark.quant import fused

    reason = fused.available("cpu")
    if reason is not None:
        pytest.skip(f"torch.compile unavailable: {reason}")


@pytest.mark.slow
def test_compiled_meter_with_kept_levels_matches_eager() -> None:
    _compiled_meter_tests_can_run()
    steps = _random_steps(7)
    eager, stored, kept = ZigZagMeter(), ZigZagMeter(compile=True), ZigZagMeter(compile=True)
    _run(eager, steps)
    _run(stored, steps)
    _run(kept, steps, kept=True)
    assert kept._u_prev is None and stored._kept is None  # the two compiled ways were taken
    want = eager.epoch_summary()
    assert all(v == v for v in want.values())  # all defined: a real comparison
    _assert_summaries_close(stored.epoch_summary(), want)
    _assert_summaries_close(kept.epoch_summary(), want)
    for got in (stored, kept):
        torch.testing.assert_close(got._freq[0], eager._freq[0])
        torch.testing.assert_close(got._dir[1], eager._dir[1])
    ta, tk = eager.pop_trace(), kept.pop_trace()
    for key in ("cosine", "flip_rate", "osc_rate"):
        np.testing.assert_allclose(tk[key], ta[key], rtol=1e-5)


@pytest.mark.slow
def test_compiled_meter_resumes_exactly_and_its_state_loads_into_either() -> None:
    """A compiled meter saved mid-run (its previous update only recomputable from the kept
    levels) continues exactly as the uninterrupted one; its state is the eager layout, so an
    eager meter continues from it too (within float rounding), and vice versa."""
    _compiled_meter_tests_can_run()
    steps = _random_steps(8)
    whole, eager = ZigZagMeter(compile=True), ZigZagMeter()
    _run(whole, steps, kept=True)
    _run(eager, steps)
    first = ZigZagMeter(compile=True)
    _run(first, steps[:4], kept=True)
    state = first.state_dict()
    assert {"dir", "freq", "u_prev"} <= set(state)  # the eager layout
    resumed, as_eager = ZigZagMeter(compile=True), ZigZagMeter()
    resumed.load_state_dict(state)
    as_eager.load_state_dict(state)
    _run(resumed, steps[4:], kept=True)
    _run(as_eager, steps[4:])
    from_eager = ZigZagMeter(compile=True)
    half = ZigZagMeter()
    _run(half, steps[:4])
    from_eager.load_state_dict(half.state_dict())
    _run(from_eager, steps[4:], kept=True)
    want = whole.epoch_summary()
    assert resumed.epoch_summary() == want  # bit for bit
    _assert_summaries_close(as_eager.epoch_summary(), want)
    _assert_summaries_close(from_eager.epoch_summary(), eager.epoch_summary())
    tw, tr = whole.pop_trace(), resumed.pop_trace()
    for key in tw:
        np.testing.assert_array_equal(tr[key], tw[key])


@pytest.mark.slow
def test_meter_switches_between_eager_and_compiled() -> None:
    _compiled_meter_tests_can_run()
    steps = _random_steps(9)
    eager, switched = ZigZagMeter(), ZigZagMeter()
    _run(eager, steps)
    for i, step in enumerate(steps):
        switched.compile = i % 3 == 1  # eager, compiled (kept levels), eager, ...
        _run(switched, [step], kept=True)
    _assert_summaries_close(switched.epoch_summary(), eager.epoch_summary())


def _binary_steps(count: int, shapes=((16, 12), (5, 16)), seed: int = 4, quiet=range(0)):
    """As ``_random_steps`` with every level -1 or +1 (about a fifth of them flip a step; none
    in every fourth step and in the steps ``quiet``)."""
    gen = torch.Generator().manual_seed(seed)
    b = [torch.where(torch.rand(s, generator=gen) < 0.5, -1.0, 1.0) for s in shapes]
    a = [torch.rand((), generator=gen) + 0.1 for _ in shapes]
    steps = []
    for i in range(count):
        rate = 0.0 if i % 4 == 3 or i in quiet else 0.2
        flip = [torch.rand(s, generator=gen) < rate for s in shapes]
        b_new = [torch.where(f, -x, x) for f, x in zip(flip, b, strict=True)]
        a_new = [torch.rand((), generator=gen) + 0.1 for _ in shapes]
        steps.append((a, b, a_new, b_new))
        a, b = a_new, b_new
    return steps


@pytest.fixture(params=["native", "inductor"])
def binary_pass(request, monkeypatch) -> str:
    """The compiled meter's pass over +-1 levels by ``zigzag.c`` (where it builds: the default)
    or by inductor."""
    from benchmark.quant import native

    if request.param == "inductor":
        monkeypatch.setattr(native, "zigzag", lambda: (None, "inductor asked for"))
    else:
        lib, reason = native.zigzag()
        if lib is None:
            if native._compiler() is None:
                pytest.skip(reason)
            pytest.fail(reason)
    return request.param


def _spy_kinds(monkeypatch) -> tuple[list[str], list[bool]]:
    """The kinds of previous update the compiled meter's layers take, in call order (the
    "binary" pass by zigzag.c or by inductor alike), and per "binary" pass whether zigzag.c
    ran it."""
    from benchmark.quant import zigzag

    kinds: list[str] = []
    native: list[bool] = []
    layer_fn, binary = zigzag._layer_fn, ZigZagMeter._binary_native

    def spy_layer(kind, store):
        kinds.append(kind)
        if kind == "binary":
            native.append(False)
        return layer_fn(kind, store)

    def spy(self, *args):
        sums = binary(self, *args)
        if sums is not None:
            kinds.append("binary")
            native.append(True)
        return sums

    monkeypatch.setattr(zigzag, "_layer_fn", spy_layer)
    monkeypatch.setattr(ZigZagMeter, "_binary_native", spy)
    return kinds, native


def _assert_same_measure(got: dict, want: dict, binary_pass: str) -> None:
    """Summaries (or traces) of a meter whose binary pass ran against one that read the old
    levels: equal, bit for bit; with zigzag.c's pass the cosine within 1e-5 (its norm and dot
    product are not the rounded float32 sums over the layer, _binary_sums), the rest equal."""
    assert set(got) == set(want)
    for key, value in want.items():
        if binary_pass == "native" and key in ("zz_cosine", "cosine"):
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-7, err_msg=key)
            continue
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.slow
def test_compiled_meter_reads_binary_levels_changes_off_its_state(monkeypatch, binary_pass) -> None:
    """With +-1 levels promised, the compiled meter takes the previous step's level change from
    the marks of its state instead of reading the levels of two steps ago: the same numbers as
    the path that reads them (bit for bit) and as the eager meter, resumed from a checkpoint
    too. A weight's first change is marked (2^-110) apart from a decayed frequency (2^-100)."""
    _compiled_meter_tests_can_run()
    kinds, native = _spy_kinds(monkeypatch)
    steps = _binary_steps(12)

    def run(meter, steps, binary):
        for a, b, a_new, b_new in steps:
            meter.update(a, b, a_new, b_new, [1, 1], b_new[0], levels_kept=True,
                         levels_binary=binary)

    eager, kept, binary = ZigZagMeter(), ZigZagMeter(compile=True), ZigZagMeter(compile=True)
    run(eager, steps, False)
    run(kept, steps, False)
    kinds.clear()
    run(binary, steps, True)
    # the first step has no previous update; every later one reads the marks the last wrote
    assert kinds[:2] == ["first", "first"] and set(kinds[2:]) == {"binary"}
    assert set(native) == {binary_pass == "native"}  # the pass asked for ran every binary step
    want = kept.epoch_summary()
    assert all(v == v for v in want.values())  # all defined
    _assert_same_measure(binary.epoch_summary(), want, binary_pass)
    for got, read in zip(binary._packed, kept._packed, strict=True):  # the same state, bit for bit
        assert torch.equal(got.view(torch.int32), read.view(torch.int32))
    _assert_summaries_close(want, eager.epoch_summary())
    torch.testing.assert_close(binary._freq[0], eager._freq[0])
    half = ZigZagMeter(compile=True)
    run(half, steps[:6], True)
    resumed = ZigZagMeter(compile=True)
    resumed.load_state_dict(half.state_dict())
    run(resumed, steps[6:], True)
    whole = ZigZagMeter(compile=True)
    run(whole, steps, True)  # the resumed meter's first steps read the stored update
    _assert_same_measure(resumed.epoch_summary(), whole.epoch_summary(), binary_pass)
    # frequencies decayed below the floor (fast, at momentum 0.1) are no first changes
    steps = _binary_steps(48, quiet=range(6, 40))
    decayed = [ZigZagMeter(momentum=0.1), ZigZagMeter(momentum=0.1, compile=True),
               ZigZagMeter(momentum=0.1, compile=True)]
    for meter, binary in zip(decayed, (False, False, True), strict=True):
        run(meter, steps, binary)
    assert bool((decayed[2]._packed[0].abs() == 2.0**-100).any())  # some reached the floor
    want = decayed[1].epoch_summary()
    _assert_same_measure(decayed[2].epoch_summary(), want, binary_pass)
    assert torch.equal(decayed[2]._packed[1], decayed[1]._packed[1])
    _assert_summaries_close(want, decayed[0].epoch_summary())


@pytest.mark.slow
def test_binary_marks_are_read_only_while_every_change_went_to_a_current_level(monkeypatch, binary_pass) -> None:
    """The marks tell the last step's changes only if every earlier change went to the level a
    weight holds (then every later change is an event): levels that do not continue, non-binary
    levels before, an eager step or a state of unknown history end the chain; a checkpoint
    carries it. Each case must give the numbers of the path that reads the old levels."""
    _compiled_meter_tests_can_run()
    kinds, native = _spy_kinds(monkeypatch)

    def t(*values, dtype=torch.float32):
        return [torch.tensor(values, dtype=dtype)]

    def run(meter, steps, binary):
        for a, b, a_new, b_new in steps:
            meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=True,
                         levels_binary=binary)
        return meter.pop_trace()

    def chain(levels, alphas, dtype=torch.float32):
        """Steps through the given levels (tensors), each continuing the last."""
        a = [[torch.tensor(x, dtype=dtype)] for x in alphas]
        return [(a[i], levels[i], a[i + 1], levels[i + 1]) for i in range(len(levels) - 1)]

    # step 2's levels before are a fresh tensor with other values than step 1's levels after
    levels = [t(-1.0, 1.0, 1.0, -1.0), t(1.0, 1.0, -1.0, -1.0), t(1.0, 1.0, 1.0, -1.0),
              t(-1.0, 1.0, 1.0, -1.0), t(1.0, 1.0, 1.0, 1.0)]
    broken = chain(levels, [0.5, 0.5, 0.4, 0.5, 0.3])
    broken[1] = (broken[1][0], t(-1.0, 1.0, 1.0, -1.0), broken[1][2], broken[1][3])
    want = run(ZigZagMeter(compile=True), broken, False)
    kinds.clear()
    got = run(ZigZagMeter(compile=True), broken, True)
    _assert_same_measure(got, want, binary_pass)
    assert kinds == ["first", "stored", "kept", "kept"]  # the chain ended at the break
    # ternary levels, then +-1 ones in the same meter
    ternary = _random_steps(4, shapes=((16, 12),), levels=1)
    binary = _binary_steps(6, shapes=((16, 12),))
    link = (ternary[-1][2], ternary[-1][3], binary[0][0], binary[0][1])
    seq = [*ternary, link, *binary]
    metered = []
    for promise in (False, True):
        meter = ZigZagMeter(compile=True)
        for i, (a, b, a_new, b_new) in enumerate(seq):
            meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=True,
                         levels_binary=promise and i >= len(ternary))
        metered.append(meter.epoch_summary())
    _assert_same_measure(metered[1], metered[0], binary_pass)
    # an eager step ends the chain too; a checkpoint keeps it
    steps = _binary_steps(8)

    def run2(meter, steps):
        for a, b, a_new, b_new in steps:
            meter.update(a, b, a_new, b_new, [1, 1], b_new[0], levels_kept=True,
                         levels_binary=True)
    switched = ZigZagMeter(compile=True)
    run2(switched, steps[:3])
    switched.compile = False
    run2(switched, steps[3:4])
    switched.compile = True
    kinds.clear()
    run2(switched, steps[4:])
    assert "binary" not in kinds
    half = ZigZagMeter(compile=True)
    run2(half, steps[:4])
    resumed = ZigZagMeter(compile=True)
    resumed.load_state_dict(half.state_dict())
    kinds.clear()
    run2(resumed, steps[4:])
    assert kinds[:2] == ["stored", "stored"] and set(kinds[2:]) == {"binary"}
    assert set(native) == {binary_pass == "native"}
    # bfloat16 levels: the same numbers as the path that reads the old levels
    source = _binary_steps(6, shapes=((16, 12),))
    bf = chain([source[0][1][0].bfloat16()] + [[x.bfloat16() for x in s[3]][0] for s in source],
               [float(source[0][0][0])] + [float(s[2][0]) for s in source], torch.bfloat16)
    bf = [(a, [b], a_new, [b_new]) for a, b, a_new, b_new in bf]
    traces = [run(ZigZagMeter(compile=True), bf, promise) for promise in (False, True)]
    for key in ("cosine", "flip_rate", "osc_rate"):
        np.testing.assert_array_equal(traces[1][key], traces[0][key])


def _zigzag_lib():
    """``zigzag.c`` built here (skips where there is no C compiler at all)."""
    from benchmark.quant import native

    lib, reason = native.zigzag()
    if lib is None and native._compiler() is None:
        pytest.skip(reason)
    assert lib is not None, reason
    return lib


@pytest.mark.slow
@pytest.mark.parametrize("size", [5, 16 * 3 + 7, 4099])
def test_native_binary_pass_gives_exact_sums_and_the_compiled_state(monkeypatch, size) -> None:
    """zigzag.c's pass against an oracle: every step's norm and dot product equal the float64
    sums of the float32 updates (as the compiled pass computes them), the moved, flipped and
    oscillating weights are counted exactly; its state is the inductor pass's bit for bit,
    through first changes, events and frequencies decayed to the floor, on 1 and 3 threads
    (pieces of 512 values: the vector loop, its tail and the pieces' seams)."""
    _compiled_meter_tests_can_run()
    _zigzag_lib()
    from benchmark.quant import zigzag

    monkeypatch.setattr(zigzag, "_PIECE", 512)
    steps = _binary_steps(48, shapes=((size,),), quiet=range(6, 40))
    alphas = [step[0][0] for step in steps] + [steps[-1][2][0]]
    for k in range(1, len(alphas), 5):  # a step that keeps alpha, and so a zero update or two
        alphas[k].copy_(alphas[k - 1])  # in place: the steps share these tensors
    calls = []
    binary = ZigZagMeter._binary_native

    def spy(self, *args):
        sums = binary(self, *args)
        calls.append(sums)
        return sums

    monkeypatch.setattr(ZigZagMeter, "_binary_native", spy)
    threads = torch.get_num_threads()
    states = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            meters = [ZigZagMeter(momentum=0.1, compile=True) for _ in range(2)]
            meters[1].native = False
            calls.clear()
            for a, b, a_new, b_new in steps:
                for meter in meters:
                    meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=True,
                                 levels_binary=True)
                got, want = (m._packed[0].view(torch.int32) for m in meters)
                assert torch.equal(got, want)
            states.append(meters[0]._packed[0].clone())
            assert len(calls) == len(steps) - 1 and all(c is not None for c in calls)
            ever = torch.zeros(size, dtype=torch.bool)
            zeros = 0
            for k, (a, b, a_new, b_new) in enumerate(steps):
                changed = b_new[0] != b[0]
                if k:
                    norm2, events, amp, dot, moved, flips = calls[k - 1]
                    u = b_new[0] * a_new[0] - b[0] * a[0]
                    u_prev = b[0] * a[0] - steps[k - 1][1][0] * steps[k - 1][0][0]
                    assert float(norm2) == pytest.approx(float((u.double() ** 2).sum()), rel=1e-7)
                    scale = float((u.double() * u_prev.double()).abs().sum())
                    assert float(dot) == pytest.approx(float((u.double() * u_prev.double()).sum()),
                                                       rel=1e-7, abs=1e-7 * scale)
                    assert int(moved) == int((u * u_prev != 0).sum())
                    zeros += int((u * u_prev == 0).sum())
                    assert int(flips) == int((-u * u_prev > 0).sum())
                    assert int(events) == int((changed & ever).sum())
                    assert float(amp) == 2.0 * int(events)
                ever |= changed
            assert zeros > 0  # unmoved weights were counted too
        assert bool((states[0].abs() == 2.0**-100).any())  # some frequencies reached the floor
        assert bool((states[0].abs() > 2).any()) or int(calls[-1][1]) == 0
        assert torch.equal(states[0], states[1])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_native_binary_pass_steps_aside_where_it_does_not_apply(monkeypatch) -> None:
    """Levels that are not float32 (here bfloat16) or BLAQ_NATIVE=0: the inductor pass, the
    same numbers as with the native pass switched off."""
    _compiled_meter_tests_can_run()
    from benchmark.quant import native

    steps = _binary_steps(8, shapes=((16, 12),))
    cast = {id(x): x.bfloat16() for step in steps for part in step for x in part}
    rows = [tuple([cast[id(x)] for x in part] for part in step) for step in steps]
    kinds, _ = _spy_kinds(monkeypatch)

    def run(steps, use_native=True):
        meter = ZigZagMeter(compile=True)
        meter.native = use_native
        for a, b, a_new, b_new in steps:
            meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=True, levels_binary=True)
        return meter.pop_trace()

    calls = []
    binary = ZigZagMeter._binary_native
    monkeypatch.setattr(ZigZagMeter, "_binary_native",
                        lambda self, *args: calls.append(binary(self, *args)) or calls[-1])
    got = run(rows)
    assert calls and all(c is None for c in calls)  # stepped aside: bfloat16 levels
    assert "binary" in kinds
    want = run(rows, use_native=False)
    for key in ("cosine", "flip_rate", "osc_rate"):
        np.testing.assert_array_equal(got[key], want[key])
    monkeypatch.setenv("BLAQ_NATIVE", "0")
    native.zigzag.cache_clear()
    try:
        assert native.zigzag() == (None, "BLAQ_NATIVE=0")
        calls.clear()
        got = run(steps)
        assert calls and all(c is None for c in calls)
        want = run(steps, use_native=False)
        for key in ("cosine", "flip_rate", "osc_rate"):
            np.testing.assert_array_equal(got[key], want[key])
    finally:
        native.zigzag.cache_clear()


@pytest.mark.slow
def test_native_binary_pass_takes_only_what_it_computes(monkeypatch) -> None:
    """zigzag.c writes no update: a "binary" step whose update is to be stored (the levels no
    longer kept) takes inductor's pass, and the next step reads that update. It takes float32
    alphas only (a float64 alpha of shape (1,) makes the pass's products float64) and
    tensors of one size."""
    _compiled_meter_tests_can_run()
    _zigzag_lib()
    meter = ZigZagMeter(compile=True)
    b, state, a = torch.ones(8), torch.zeros(8), torch.tensor(0.5)
    assert meter._binary_native(a, b, a, b, state, a, 1) is not None
    a64 = torch.tensor([0.5], dtype=torch.float64)
    assert meter._binary_native(a64, b, a64, b, state, a64, 1) is None
    assert meter._binary_native(a, b, a, torch.ones(9), state, a, 1) is None
    kinds, native = _spy_kinds(monkeypatch)
    steps = _binary_steps(6, shapes=((16, 12),))
    traces = []
    for use_native in (True, False):
        meter = ZigZagMeter(compile=True)
        meter.native = use_native
        for i, (a, b, a_new, b_new) in enumerate(steps):
            meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=i < 3,
                         levels_binary=True)
        traces.append(meter.pop_trace())
    assert kinds[:6] == ["first", "binary", "binary", "binary", "stored", "stored"]
    assert native == [True, True, False, False, False, False]  # the stored step: inductor's
    _assert_same_measure(traces[0], traces[1], "native")


def test_compiled_meter_refuses_float16_levels() -> None:
    """float16 cannot hold the packed state's 2^-100 floor: the compiled meter says so."""
    _compiled_meter_tests_can_run()
    b = [torch.ones(4, dtype=torch.float16)]
    a = [torch.tensor(0.5, dtype=torch.float16)]
    with pytest.raises(UserError, match="float16"):
        ZigZagMeter(compile=True).update(a, b, a, b, [1])


def test_packed_state_round_trip() -> None:
    from benchmark.quant.zigzag import _pack, _unpack_freq

    meter = ZigZagMeter()
    direction = torch.tensor([0.0, 1.0, -1.0, 1.0, -1.0, 1.0])
    freq = torch.tensor([0.0, 0.0, 0.0, 0.0099999998, 0.5, 1.0])
    packed = _pack(direction, freq)
    assert torch.equal(torch.sign(packed), direction)
    assert torch.equal(_unpack_freq(packed, meter._event_scale), freq)
    # right after an event the state is scaled by S (|s| > 2), exactly
    scale = meter._event_scale
    assert scale == 256  # 2 < S (1 - mu) (1 - 2^-8) <= 4
    marked = packed * torch.tensor([1.0, 1.0, 1.0, scale, scale, scale])
    assert torch.equal(_unpack_freq(marked, scale), freq)


@pytest.mark.slow
@pytest.mark.parametrize("momentum", [0.0, 0.5, 1 - 2**-6 * (1 + 2**-30), 1 - 1e-7])
def test_compiled_meter_marks_events_at_any_momentum(momentum) -> None:
    """An event's packed state S f must exceed 2 after 1 - momentum is rounded to the state's
    dtype: at 1 - 2^-6 (1 + 2^-30), S (1 - mu) is above 2 in double but 2 exactly with the
    float32 rounding of 1 - mu, and an S chosen from the double marked no event there."""
    _compiled_meter_tests_can_run()
    steps = _binary_steps(10, shapes=((64,),))
    summaries = []
    for compiled, binary in ((False, False), (True, False), (True, True)):
        meter = ZigZagMeter(momentum=momentum, compile=compiled)
        for a, b, a_new, b_new in steps:
            meter.update(a, b, a_new, b_new, [1], b_new[0], levels_kept=True,
                         levels_binary=binary)
        summaries.append(meter.epoch_summary())
    assert summaries[0]["zz_osc_freq"] > 0  # there were events
    for got in summaries[1:]:
        _assert_summaries_close(got, summaries[0])
    meter = ZigZagMeter(momentum=momentum)
    rest = torch.tensor(1 - momentum, dtype=torch.bfloat16).float()
    assert float(rest) * meter._event_scale > 2 and float(rest) * meter._event_scale <= 4.1


def test_eager_meter_ignores_the_kept_levels_promise() -> None:
    """The eager path stores the update either way: its results are those it always gave."""
    steps = _random_steps(5)
    a, b = ZigZagMeter(), ZigZagMeter()
    _run(a, steps)
    _run(b, steps, kept=True)
    assert a.epoch_summary() == pytest.approx(b.epoch_summary(), rel=0, abs=0, nan_ok=True)
    assert torch.equal(a._freq[0], b._freq[0])


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "scheme", "bits"), [("LossAwareAdam", "lab", 1),
                                                     ("BLAQ", "lab", 1),
                                                     ("BLAQ", "laq-linear", 3)])
def test_compiled_optimizer_keeps_the_levels_the_meter_reads(
    monkeypatch: pytest.MonkeyPatch, cls: str, scheme: str, bits: int
) -> None:
    """With compile=True the optimizer promises the meter each step's levels until the next
    step (a third level buffer per layer): the meter's recomputed previous update must equal the
    one it stores when the promise is withheld, so no level it reads was overwritten."""
    _compiled_meter_tests_can_run()
    from torch import nn

    from benchmark.quant import BLAQ, LossAwareAdam

    optimizer = {"LossAwareAdam": LossAwareAdam, "BLAQ": BLAQ}[cls]
    x = torch.randn(32, 12, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(2))
    summaries = []
    for kept in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))
        kwargs = {"m": 1} if cls == "BLAQ" else {}
        opt = optimizer(model, scheme, bits=bits, lr=0.05, zigzag=True, compile=True, **kwargs)
        if not kept:
            monkeypatch.setattr(opt, "_levels_kept", lambda: False)

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(6):
            opt.step(closure)
        assert (opt.zigzag._kept is not None) == kept
        assert opt.zigzag._binary_chain == (kept and scheme == "lab")  # +-1 levels: marks read
        if kept:
            bufs = opt._scratch[id(opt.quantized_params()[0])]
            assert len({id(bufs[f"levels{i}"]) for i in range(3)}) == 3
        summaries.append(opt.zigzag.epoch_summary())
    assert summaries[0]["zz_cosine"] == summaries[0]["zz_cosine"]  # defined
    _assert_summaries_close(summaries[0], summaries[1])
