"""Property tests of the pure helpers: run ids, seed parsing, number formatting, trace decimation."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.cells import TIE_TOL, fmt_mean_std
from benchmark.cli import MAX_SEEDS, parse_seeds
from benchmark.config import RunConfig, run_id
from benchmark.errors import UserError
from benchmark.train import decimated_iterations, make_trace

# no deadline and no speed health check: a test's verdict must not depend on the machine's load
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
keys = st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=8)


def _shuffled(value, rng: random.Random):
    """The same value with every dict's keys in another order (lists keep theirs)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# run ids


@SETTINGS
@given(key=keys, seed=st.integers(0, 2**32 - 1))
def test_run_id_ignores_the_order_of_dict_keys_at_every_depth(key, seed):
    rid = run_id(key)
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert run_id(_shuffled(key, random.Random(seed))) == rid
    assert run_id(key) == rid  # stable from call to call


@SETTINGS
@given(key=keys, name=st.text(min_size=1, max_size=10), value=json_scalars)
def test_run_id_changes_when_the_config_changes(key, name, value):
    changed = {**key, name: value}
    if changed != key:
        assert run_id(changed) != run_id(key)


def test_run_id_is_pinned():
    """The hash itself must never change (the committed stores are addressed by it)."""
    assert run_id({"a": 1, "b": [1, 2.5, None], "c": {"d": "x"}}) == "feb7f32a9f2ced57"  # md5sum of its compact JSON
    assert RunConfig(task="mnist-mlp", method="blaq", bits=1, profile="smoke", seed=0).run_id == \
        RunConfig(profile="smoke", options={"m": None}).run_id


@SETTINGS
@given(a=st.sampled_from([None, 0.0, 0.3, 0.6, 1.0]), m=st.sampled_from([None, 1, 2, 5]),
       blend=st.sampled_from([None, "moment", "gradient"]), seed=st.integers(0, 10**6),
       order=st.permutations(["a", "m", "blend"]))
def test_a_config_id_does_not_depend_on_how_its_options_are_given(a, m, blend, seed, order):
    values = {"a": a, "m": m, "blend": blend}
    options = {k: values[k] for k in order}
    as_dict = RunConfig(method="blaq", profile="smoke", seed=seed, options=options)
    as_keywords = RunConfig(method="blaq", profile="smoke", seed=seed, **values)
    assert as_dict.run_id == as_keywords.run_id
    # defaults spelled out give the id of defaults left out
    resolved = as_dict.resolved()
    assert RunConfig(method="blaq", profile="smoke", seed=seed, **resolved.options).run_id == as_dict.run_id


# --------------------------------------------------------------------------------------------
# seed parsing


@SETTINGS
@given(seeds=st.lists(st.integers(0, 10**9), min_size=1, max_size=20, unique=True))
def test_a_seed_list_round_trips(seeds):
    text = ",".join(map(str, seeds))
    assert parse_seeds(text if len(seeds) > 1 else text + ",") == tuple(seeds)
    assert parse_seeds(" " + text.replace(",", ", ") + ", ") == tuple(seeds)


@SETTINGS
@given(lo=st.integers(0, 10**6), width=st.integers(0, MAX_SEEDS - 1), count=st.integers(1, MAX_SEEDS))
def test_counts_and_ranges_name_consecutive_seeds(lo, width, count):
    assert parse_seeds(str(count)) == tuple(range(count))
    assert parse_seeds(f"{lo}-{lo + width}") == tuple(range(lo, lo + width + 1))


@SETTINGS
@given(seeds=st.lists(st.integers(0, 100), min_size=2, max_size=10).filter(lambda s: len(set(s)) < len(s)))
def test_a_repeated_seed_is_refused(seeds):
    with pytest.raises(UserError, match="repeats a seed"):
        parse_seeds(",".join(map(str, seeds)))


@SETTINGS
@given(text=st.text(alphabet="0123456789,- x+.", max_size=12))
def test_any_text_gives_distinct_non_negative_seeds_or_a_one_line_user_error(text):
    try:
        seeds = parse_seeds(text)
    except UserError as err:
        assert "\n" not in str(err)
        return
    assert seeds and len(set(seeds)) == len(seeds)
    assert all(isinstance(s, int) and s >= 0 for s in seeds)


# --------------------------------------------------------------------------------------------
# number formatting


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


@SETTINGS
@given(mean=st.floats(-1e6, 1e6, allow_nan=False), std=st.none() | st.floats(0, 1e4),
       decimals=st.integers(0, 6))
def test_mean_and_std_print_to_their_decimals(mean, std, decimals):
    text = fmt_mean_std(mean, std, decimals)
    parts = text.split(" ± ")
    assert len(parts) == (1 if std is None else 2)
    m = parts[0]
    assert _decimals(m) == decimals
    assert abs(float(m) - mean) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-9 * abs(mean)
    if std is not None:
        s = parts[1]
        assert _decimals(s) >= decimals  # never fewer digits than the mean
        assert abs(float(s) - std) <= 0.5 * 10.0**-_decimals(s) * (1 + 1e-9) + 1e-9 * std
        if std >= TIE_TOL:
            assert float(s) > 0  # a real spread never prints as zero
        if _decimals(s) > decimals:  # extra digits only when the mean's would print zero
            assert float(f"{std:.{decimals}f}") == 0


@SETTINGS
@given(mean=st.floats(1e-6, 1e6) | st.floats(-1e6, -1e-6))
def test_without_decimals_the_mean_keeps_three_significant_digits(mean):
    text = fmt_mean_std(mean, None, None)
    d = _decimals(text)
    assert 0 <= d <= 6
    exponent = math.floor(math.log10(abs(mean)))
    if -4 <= exponent <= 2:  # within the 0..6 decimals the rule allows
        assert d == max(0, 2 - exponent)


# --------------------------------------------------------------------------------------------
# trace decimation


@SETTINGS
@given(n=st.integers(0, 200_000), max_points=st.integers(1, 5000))
def test_decimated_iterations_are_bounded_evenly_spaced_and_start_at_one(n, max_points):
    its = decimated_iterations(n, max_points)
    assert len(its) <= max_points
    if n == 0:
        assert len(its) == 0
        return
    assert its[0] == 1 and its[-1] <= n
    if len(its) == 1:  # one point: every stride from n on keeps just it
        return
    steps = set(np.diff(its).tolist())
    assert len(steps) == 1
    stride = steps.pop()
    assert stride & (stride - 1) == 0  # a power of two
    assert n - its[-1] < stride  # the last point is within a stride of the end
    if stride > 1:  # the least such power: half the stride would keep too many points
        assert -(-n // (stride // 2)) > max_points


@SETTINGS
@given(n=st.integers(1, 100_000), more=st.integers(0, 100_000), max_points=st.integers(1, 2000))
def test_a_longer_run_never_gets_a_finer_stride(n, more, max_points):
    def stride(k):
        its = decimated_iterations(k, max_points)
        return int(its[1] - its[0]) if len(its) > 1 else 1

    assert stride(n + more) >= stride(n)


@SETTINGS
@given(losses=st.lists(st.floats(0, 10), min_size=0, max_size=3000))
def test_a_trace_holds_the_loss_of_each_iteration_it_keeps(losses):
    trace = make_trace(losses, meter=None)
    assert len(trace["loss"]) == len(trace["iteration"])
    for it, loss in zip(trace["iteration"], trace["loss"], strict=True):
        assert loss == losses[it - 1]
