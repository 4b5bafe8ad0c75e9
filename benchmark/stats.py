"""The statistics behind every verdict: paired differences over seeds, their Student-t interval,
and the seeds a claim would need.

A claim compares paired runs (same task, setting and seed, one run on each side) through their
differences ``d_i``, oriented so that a positive difference is the claim's side (e.g. BLAQ's
accuracy minus LAQ's; for a lower-is-better metric LAQ's minus BLAQ's). From the ``n`` differences:

- the mean and the sample standard deviation ``s`` (ddof = 1);
- the 95% confidence interval ``mean ± t(0.975, n - 1) * s / sqrt(n)`` (Student t over seeds,
  the interval of a paired t test); none for ``n = 1``; a point when every difference is equal
  (zero spread: ``s`` below ``TIE_TOL``, so float noise reads as a tie);
- the verdict:
  - ``holds``: the interval lies on the claim's side of zero;
  - ``contradicted``: the interval lies on the other side of zero (``reason`` "wrong side of
    zero"), or, where the paper gives its own gap, excludes that gap ("excludes the paper's
    gap"); a direction that holds wins over a gap the interval excludes (the text says both);
  - ``inconclusive``: otherwise, with the seeds needed: the smallest n at which a two-sided
    paired t test (alpha 0.05) has power 0.8 to detect the paper's gap (or, where the paper gives
    none, the measured mean difference) at the measured spread ``s``, from the noncentral t
    distribution (``scipy.stats.nct``), never fewer than one seed more than measured;
  - ``stand-in``: the runs used stand-in data: no verdict, the difference for information only;
  - ``no data``: no seed completed on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.cells import TIE_TOL

ALPHA = 0.05
POWER = 0.8
CONFIDENCE = 0.95
MAX_SEEDS = 1000  # the seeds-needed search stops here ("more than 1000")
VERDICTS = ("holds", "contradicted", "inconclusive", "stand-in", "no data")


@dataclass(frozen=True)
class Verdict:
    """What the paired differences of a claim say (see the module docstring)."""

    n: int
    mean: float | None
    sd: float | None  # sample std of the differences; None below two
    lo: float | None  # the 95% interval; None below two differences
    hi: float | None
    verdict: str  # one of VERDICTS
    reason: str = ""  # contradicted: "wrong side of zero" | "excludes the paper's gap"
    paper_gap: float | None = None
    effect: float | None = None  # the difference the seeds needed would resolve
    seeds_needed: int | None = None  # inconclusive: n for power 0.8 (None: cannot be computed)
    more_than_max: bool = False  # the search reached MAX_SEEDS without power 0.8

    @property
    def decided(self) -> bool:
        return self.verdict in ("holds", "contradicted")


def t_interval(diffs: Sequence[float], confidence: float = CONFIDENCE
               ) -> tuple[float, float] | None:
    """The Student-t interval of the mean of ``diffs``; None below two values; a point at zero
    spread."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd < TIE_TOL:
        return mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * sd / math.sqrt(d.size)
    return mean - half, mean + half


def power(n: int, effect: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t test on ``n`` differences to detect a true mean
    difference ``effect`` when the differences have standard deviation ``sd``."""
    from scipy import stats

    if n < 2:
        return 0.0
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) / sd * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_for_power(effect: float, sd: float, alpha: float = ALPHA, target: float = POWER,
                    max_n: int = MAX_SEEDS) -> int | None:
    """The smallest n >= 2 with ``power(n, effect, sd) >= target``; None if even ``max_n``
    falls short. ``sd`` must be positive and ``effect`` nonzero."""
    if sd <= 0 or effect == 0:
        raise ValueError("seeds_for_power needs a positive spread and a nonzero effect")
    # the normal approximation is a lower bound to start from (the t test needs a little more)
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target))
    n = max(2, math.floor((z * sd / abs(effect)) ** 2) - 1)
    if n > max_n:
        return None
    while power(n, effect, sd, alpha) < target:
        n += 1
        if n > max_n:
            return None
    while n > 2 and power(n - 1, effect, sd, alpha) >= target:  # never above the smallest
        n -= 1
    return n


def judge(diffs: Sequence[float], paper_gap: float | None = None,
          stand_in: bool = False) -> Verdict:
    """The verdict of paired differences (oriented: positive = the claim's side)."""
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    if n == 0:
        return Verdict(0, None, None, None, None, "no data", paper_gap=paper_gap)
    mean = float(d.mean())
    if abs(mean) < TIE_TOL:
        mean = 0.0  # float noise (0.1 + 0.2 - 0.3) is a tie
    sd = float(d.std(ddof=1)) if n >= 2 else None
    if sd is not None and sd < TIE_TOL:
        sd = 0.0
    interval = t_interval(d)
    lo, hi = interval if interval else (None, None)
    if sd == 0:
        lo = hi = mean
    base = dict(n=n, mean=mean, sd=sd, lo=lo, hi=hi, paper_gap=paper_gap)
    if stand_in:
        return Verdict(verdict="stand-in", **base)
    if interval is None:
        return Verdict(verdict="inconclusive", reason="one seed: no interval", **base)
    if lo > 0:
        return Verdict(verdict="holds", **base)
    if hi < 0:
        return Verdict(verdict="contradicted", reason="wrong side of zero", **base)
    if paper_gap is not None and not lo <= paper_gap <= hi:
        return Verdict(verdict="contradicted", reason="excludes the paper's gap", **base)
    effect = paper_gap if paper_gap else mean
    if sd == 0 or effect == 0:
        return Verdict(verdict="inconclusive", reason="no difference to resolve", effect=effect,
                       **base)
    needed = seeds_for_power(effect, sd)
    if needed is None:
        return Verdict(verdict="inconclusive", effect=effect, seeds_needed=MAX_SEEDS,
                       more_than_max=True, **base)
    return Verdict(verdict="inconclusive", effect=effect, seeds_needed=max(needed, n + 1),
                   **base)


# ---------------------------------------------------------------------------------------------
# the words


def _decimals(x: float, significant: int) -> int:
    """Decimals that show ``significant`` digits of ``x`` (at most 12)."""
    if x == 0 or not math.isfinite(x):
        return significant - 1
    return min(12, max(0, significant - 1 - math.floor(math.log10(abs(x)))))


def number_decimals(v: Verdict, decimals: int | None) -> int:
    """The decimals a verdict's numbers print with: ``decimals`` if given, else three
    significant digits of the largest of mean and interval bounds (never a nonzero mean as 0)."""
    if decimals is not None:
        return decimals
    values = [abs(x) for x in (v.mean, v.lo, v.hi) if x is not None]
    d = _decimals(max(values), 3) if values else 2
    if v.lo is not None and v.hi > v.lo:  # two significant digits of the interval's half width
        d = max(d, _decimals((v.hi - v.lo) / 2, 2))
    if v.mean and float(f"{v.mean:.{d}f}") == 0:
        d = _decimals(abs(v.mean), 2)
    return d


def signed(x: float, decimals: int) -> str:
    """``+0.40``, ``-0.12``; a zero (as printed) without a sign."""
    text = f"{x:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text


def describe(v: Verdict, unit: str = "", decimals: int | None = 2, command: str = "") -> str:
    """The verdict as words: ``holds: +0.40 points, 95% CI [+0.12, +0.68] (Student t over 3
    paired seeds)``; an inconclusive one adds the seeds needed and ``command`` with
    ``{seeds}`` filled in (e.g. ``python reproduce.py --table 4 --seeds {seeds}``)."""
    if v.verdict == "no data":
        return "cannot tell: no seed completed for both"
    d = number_decimals(v, decimals)
    u = f" {unit}" if unit else ""

    def num(x: float) -> str:
        return signed(x, d)

    seeds = f"{v.n} paired seed{'s' if v.n != 1 else ''}"
    if v.verdict == "stand-in":
        spread = f" ± {v.sd:.{d}f}" if v.sd is not None else ""
        return (f"stand-in: no verdict (the difference, for information only: {num(v.mean)}"
                f"{spread}{u}, mean ± sd over {seeds})")
    if v.lo is None:
        more = command.format(seeds=3) if command else ""
        return (f"inconclusive: {num(v.mean)}{u} on 1 seed, and one seed gives no interval"
                + (f"; an interval needs at least 2 seeds (`{more}`)" if more else ""))
    measured = f"{num(v.mean)}{u}, 95% CI [{num(v.lo)}, {num(v.hi)}] (Student t over {seeds})"
    gap = "" if v.paper_gap is None else f"the paper's gap of {num(v.paper_gap)}{u}"
    if v.verdict == "holds":
        text = f"holds: {measured}"
        if v.paper_gap is not None and not v.lo <= v.paper_gap <= v.hi:
            side = "below" if v.hi < v.paper_gap else "above"
            text += f"; the interval lies {side} {gap}"
        return text
    if v.verdict == "contradicted":
        why = ("the interval lies on the wrong side of zero" if v.reason == "wrong side of zero"
               else f"the interval excludes {gap}")
        return f"contradicted ({why}): {measured}"
    if v.reason == "no difference to resolve":
        why = "every paired difference is zero" if v.sd == 0 else "the mean difference is zero"
        return f"inconclusive: {measured}; {why}, so no number of seeds resolves a difference"
    target = gap if v.paper_gap else f"the measured difference of {num(v.effect)}{u}"
    count = f"more than {MAX_SEEDS}" if v.more_than_max else str(v.seeds_needed)
    text = (f"inconclusive: {measured}; at this spread {count} seeds would resolve {target} "
            f"(two-sided paired t, alpha {ALPHA:g}, power {POWER:g})")
    if command and not v.more_than_max:
        text += f": `{command.format(seeds=v.seeds_needed)}`"
    return text


def short(v: Verdict) -> str:
    """A verdict in a table cell: ``holds``, ``contradicted (wrong side of zero)``,
    ``inconclusive (12 seeds needed)``, ``stand-in: no verdict``, ``—``."""
    if v.verdict == "no data":
        return "—"
    if v.verdict == "stand-in":
        return "stand-in: no verdict"
    if v.verdict == "contradicted":
        return f"contradicted ({v.reason})"
    if v.verdict == "inconclusive":
        if v.lo is None:
            return "inconclusive (1 seed, no interval)"
        if v.seeds_needed is None:
            return "inconclusive (no difference)"
        count = f"> {MAX_SEEDS}" if v.more_than_max else str(v.seeds_needed)
        return f"inconclusive ({count} seeds needed)"
    return v.verdict
