"""The statistics of the verdicts against scipy.stats on hand-made data: the paired t interval,
the power of the paired t test and the seeds needed, and the verdict rules at their edges
(one seed, zero spread, ties, the paper's gap, stand-in data)."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.stats import (
    MAX_SEEDS,
    describe,
    judge,
    power,
    seeds_for_power,
    short,
    t_interval,
)

BLAQ = np.array([91.2, 90.8, 91.9, 91.4, 90.6])
LAQ = np.array([90.9, 90.6, 91.1, 90.7, 90.5])


def test_interval_is_the_paired_t_tests_interval():
    lo, hi = t_interval(BLAQ - LAQ)
    ref = stats.ttest_rel(BLAQ, LAQ).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    d = BLAQ - LAQ
    by_hand = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    assert (lo, hi) == pytest.approx(by_hand, abs=1e-12)
    # two seeds: one degree of freedom, t = 12.706
    lo, hi = t_interval([1.0, 2.0])
    assert hi - lo == pytest.approx(2 * 12.7062047 * math.sqrt(0.5) / math.sqrt(2), rel=1e-6)


def test_verdict_numbers_match_scipy():
    v = judge(BLAQ - LAQ)
    assert v.n == 5 and v.mean == pytest.approx(0.42) and v.sd == pytest.approx(np.std(BLAQ - LAQ, ddof=1))
    assert v.verdict == "holds" and v.lo > 0  # the paired t test rejects at 5% too
    assert stats.ttest_rel(BLAQ, LAQ).pvalue < 0.05
    flipped = judge(LAQ - BLAQ)
    assert flipped.verdict == "contradicted" and flipped.reason == "wrong side of zero"
    assert (flipped.lo, flipped.hi) == pytest.approx((-v.hi, -v.lo))


@pytest.mark.parametrize(("effect", "expected"), [(0.5, 34), (0.8, 15), (1.0, 10), (2.0, 5)])
def test_seeds_for_power_are_the_textbook_sample_sizes(effect, expected):
    # two-sided one-sample (paired) t test, alpha 0.05, power 0.8, effect in units of the sd:
    # the classic table values (G*Power gives the same)
    assert seeds_for_power(effect, 1.0) == expected
    assert seeds_for_power(3 * effect, 3.0) == expected  # only effect / sd matters


def test_power_is_the_noncentral_t_tail_and_the_seeds_the_smallest_with_power_08():
    effect, sd = 0.3, 0.5
    n = seeds_for_power(effect, sd)
    for k in (n - 1, n):
        df, nc = k - 1, effect / sd * math.sqrt(k)
        crit = stats.t.ppf(0.975, df)
        by_nct = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        assert power(k, effect, sd) == pytest.approx(by_nct, abs=1e-12)
    assert power(n, effect, sd) >= 0.8 > power(n - 1, effect, sd)


def test_power_agrees_with_a_simulation():
    """Draw paired experiments at the computed n and count the t tests that reject."""
    effect, sd = 0.4, 1.0
    n = seeds_for_power(effect, sd)
    rng = np.random.default_rng(7)
    draws = rng.normal(effect, sd, size=(20000, n))
    rejected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(power(n, effect, sd), abs=0.012)
    assert rejected.mean() > 0.78


def test_seeds_for_power_gives_up_beyond_the_cap_and_refuses_nonsense():
    assert seeds_for_power(0.001, 1.0) is None
    with pytest.raises(ValueError):
        seeds_for_power(0.0, 1.0)
    with pytest.raises(ValueError):
        seeds_for_power(1.0, 0.0)


def test_inconclusive_gives_the_seeds_for_the_papers_gap_or_the_measured_difference():
    d = [0.3, -0.1, 0.4]
    v = judge(d)
    assert v.verdict == "inconclusive" and v.effect == pytest.approx(np.mean(d))
    assert v.seeds_needed == seeds_for_power(np.mean(d), np.std(d, ddof=1))
    with_gap = judge(d, paper_gap=0.5)
    assert with_gap.verdict == "inconclusive" and with_gap.effect == 0.5
    assert with_gap.seeds_needed == max(seeds_for_power(0.5, np.std(d, ddof=1)), 4)
    text = describe(with_gap, "points", 2, "python reproduce.py --table 4 --seeds {seeds}")
    assert text.startswith("inconclusive: +0.20 points, 95% CI [-0.46, +0.86] (Student t over "
                           "3 paired seeds); at this spread")
    assert f"`python reproduce.py --table 4 --seeds {with_gap.seeds_needed}`" in text
    assert "the paper's gap of +0.50 points" in text
    assert short(with_gap) == f"inconclusive ({with_gap.seeds_needed} seeds needed)"


def test_an_interval_that_excludes_the_papers_gap_contradicts_it():
    v = judge([0.1, -0.1, 0.05, 0.0], paper_gap=1.4)
    assert v.verdict == "contradicted" and v.reason == "excludes the paper's gap"
    assert "contradicted (the interval excludes the paper's gap of +1.40 points)" in describe(
        v, "points")
    # a direction that holds stays "holds", and says the gap lies outside
    v = judge([0.2, 0.25, 0.22], paper_gap=1.4)
    assert v.verdict == "holds"
    assert describe(v, "points").endswith("the interval lies below the paper's gap of +1.40 points")


def test_one_seed_has_no_interval_and_says_so():
    v = judge([0.3])
    assert v.n == 1 and v.lo is None and v.hi is None and v.sd is None
    assert v.verdict == "inconclusive" and v.seeds_needed is None
    text = describe(v, "points", 2, "python reproduce.py --table 3 --seeds {seeds}")
    assert text == ("inconclusive: +0.30 points on 1 seed, and one seed gives no interval; an "
                    "interval needs at least 2 seeds (`python reproduce.py --table 3 --seeds 3`)")
    assert t_interval([0.3]) is None


def test_zero_spread_is_a_point_interval():
    v = judge([0.5, 0.5, 0.5])
    assert v.sd == 0 and (v.lo, v.hi) == (0.5, 0.5) and v.verdict == "holds"
    # float noise in the differences is no spread either
    v = judge([0.1 + 0.2 - 0.3, 0.0, 0.0])
    assert v.sd == 0 and v.lo == v.hi


def test_ties_on_every_seed_cannot_be_resolved_by_more_seeds():
    v = judge([0.0, 0.0, 0.0])
    assert v.verdict == "inconclusive" and v.reason == "no difference to resolve"
    assert v.seeds_needed is None
    assert describe(v, "points").endswith(
        "every paired difference is zero, so no number of seeds resolves a difference")
    # but they contradict a gap the paper reports
    assert judge([0.0, 0.0, 0.0], paper_gap=0.4).reason == "excludes the paper's gap"
    # a mean of exactly zero with a spread: nothing to resolve either
    assert judge([0.5, -0.5]).reason == "no difference to resolve"


def test_stand_in_data_has_no_verdict():
    v = judge(BLAQ - LAQ, stand_in=True)
    assert v.verdict == "stand-in" and not v.decided and v.seeds_needed is None
    assert describe(v, "points") == ("stand-in: no verdict (the difference, for information only: "
                                      "+0.42 ± 0.31 points, mean ± sd over 5 paired seeds)")
    assert short(v) == "stand-in: no verdict"


def test_no_data():
    v = judge([])
    assert v.verdict == "no data" and describe(v) == "cannot tell: no seed completed for both"


def test_tiny_differences_print_with_their_own_digits():
    v = judge([2.0e-6, 2.4e-6, 1.5e-6])
    text = describe(v, "events", None)
    assert text.startswith("holds: +0.00000197 events, 95% CI [+0.00000085, +0.00000309]")


def test_beyond_the_cap_says_more_than():
    v = judge([0.001, -0.5, 0.5, 0.3, -0.3])
    assert v.more_than_max and short(v) == f"inconclusive (> {MAX_SEEDS} seeds needed)"
    assert f"more than {MAX_SEEDS} seeds" in describe(v, "", None, "cmd --seeds {seeds}")
