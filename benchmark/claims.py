"""Claims: the sentence at the top of a table (or figure) saying whether the paper's claim held.

A claim is a callable ``Results -> str``; the spec lists its claims and the table writer puts
their sentences above the table. Every claim compares paired runs (same task, setting and seed)
and reads as one verdict of ``benchmark.stats``: holds, contradicted (and why), inconclusive
(with the seeds it would need and the command that runs them), or, on stand-in data, no verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.cells import any_stand_in, cell, decimals_for, tied
from benchmark.labels import STAND_IN_LABEL, STAND_IN_NOTE, bits_label, group_label, task_label
from benchmark.paper import Reference, lookup, same_paper
from benchmark.results import Results
from benchmark.stats import Verdict, describe, judge

PROG = "python reproduce.py"


def paired(results: Results, a: int, b: int, metric: str) -> tuple[np.ndarray, bool]:
    """Per-seed differences a - b over the seeds where both runs completed with a value of
    ``metric``, and whether any of the runs compared used stand-in data."""
    frame = results.frame
    if metric not in frame:
        return np.array([]), False
    done = frame[(frame.status == "completed") & frame[metric].notna()]
    ra = done[done.entry == a].set_index("seed")
    rb = done[done.entry == b].set_index("seed")
    common = sorted(set(ra.index) & set(rb.index))
    diff = np.array([float(ra[metric][s]) - float(rb[metric][s]) for s in common])
    stand_in = any_stand_in([*ra.stand_in[common], *rb.stand_in[common]])
    return diff, stand_in


def command(results: Results) -> str:
    """The command that reruns this table or figure with more seeds (``{seeds}`` to fill in)."""
    spec = results.spec
    kind = getattr(spec, "kind", "table")
    profile = "" if results.profile == "quick" else f" --profile {results.profile}"
    return f"{PROG} --{kind} {spec.number}{profile} --seeds {{seeds}}"


def paper_reference(results: Results, entry: int) -> Reference | None:
    s = results.setting(entry)
    return lookup(s["task"], s["method"], s["bits"], s["scheme"], s["a"], s["m"])


def paper_gap(better: Reference | None, worse: Reference | None) -> float | None:
    """The paper's own gap better - worse: only where one paper gives both numbers."""
    if better is None or worse is None or not same_paper(better.source, worse.source):
        return None
    return round(better.value - worse.value, 6)


def _published(better: Reference, worse: Reference) -> str:
    """The two published numbers, each with its source; a gap is the paper's only when one
    paper gives both (different papers ran different setups)."""
    gap = f"{better.value - worse.value:+.2f}"
    both = f"Published: {better.text} [{better.source}] vs {worse.text} [{worse.source}]"
    if same_paper(better.source, worse.source):
        return f"{both}, the paper's gap {gap}."
    return (f"{both} ({gap}, from different papers with different setups: not a gap either "
            "paper reports).")


@dataclass(frozen=True)
class Beats:
    """The claim "``better`` beats ``worse``" on one result column, judged on paired seeds.

    ``better``/``worse`` select one entry each by its resolved setting, e.g.
    ``{"task": "cifar10-vgg", "method": "blaq", "bits": 1}``. On accuracy, the paper's gap is
    the difference of the two published numbers where one paper gives both.
    """

    claim: str
    better: Mapping[str, Any]
    worse: Mapping[str, Any]
    metric: str = "test_acc"
    higher_is_better: bool = True
    unit: str = "points"

    def _entries(self, results: Results) -> tuple[int, int] | None:
        win, lose = results.select(**self.better), results.select(**self.worse)
        return (win[0], lose[0]) if len(win) == 1 and len(lose) == 1 else None

    def verdict(self, results: Results) -> Verdict | None:
        """The verdict (None where the results do not hold both settings)."""
        pair = self._entries(results)
        if pair is None:
            return None
        diff, stand_in = paired(results, *pair, self.metric)
        if not self.higher_is_better:
            diff = -diff
        gap = None
        if self.metric == "test_acc":
            gap = paper_gap(paper_reference(results, pair[0]), paper_reference(results, pair[1]))
        return judge(diff, gap, stand_in)

    def __call__(self, results: Results) -> str:
        task = self.better.get("task")
        head = f"On {task_label(task)}, {self.claim}:" if task else f"{self.claim}:"
        v = self.verdict(results)
        if v is None:
            return f"{head} cannot tell: the {results.profile} grid does not hold both settings."
        d = 2 if self.metric == "test_acc" else None
        text = f"{head} {describe(v, self.unit, d, command(results))}."
        if v.verdict == "stand-in":
            text += f" {STAND_IN_NOTE}"
        if self.metric == "test_acc" and v.n:
            pw, pl = (paper_reference(results, e) for e in self._entries(results))
            if pw is not None and pl is not None:
                text += f" {_published(pw, pl)}"
        return text


@dataclass(frozen=True)
class Falls:
    """The claim "``metric`` falls as ``along`` grows" among the entries selected by ``where``:
    judged on the paired differences (by seed) of the smallest against the largest value of
    ``along``; the means of every step are printed for information."""

    claim: str
    where: Mapping[str, Any]
    metric: str
    along: str = "bits"

    def __call__(self, results: Results) -> str:
        points = []
        for e in results.select(**self.where):
            c = cell(results.rows(e), self.metric)
            if c.mean is not None:
                points.append((results.setting(e)[self.along], c.mean, e))
        points.sort(key=lambda p: p[0])
        head = f"{self.claim}:"
        if len(points) < 2:
            return f"{head} cannot tell: fewer than two settings have completed runs."
        ys = [y for _, y, _ in points]
        diff, stand_in = paired(results, points[0][2], points[-1][2], self.metric)
        v = judge(diff, None, stand_in)
        show = (lambda x: bits_label(x)) if self.along == "bits" else str
        ends = f"{show(points[0][0])} against {show(points[-1][0])}, paired by seed"
        shape = "falling at every step" if all(b < a for a, b in zip(ys, ys[1:], strict=False)) \
            else "not falling at every step"
        series = ", ".join(f"{show(x)}: {y:.{decimals_for(y)}f}" for x, y, _ in points)
        text = (f"{head} {describe(v, '', None, command(results))} ({ends}; the means, "
                f"{shape}: {series}).")
        return text + (f" {STAND_IN_NOTE}" if v.verdict == "stand-in" else "")


@dataclass(frozen=True)
class BestSetting:
    """Is the paper's best (a, m) of each task and bit width the measured best? Judged on the
    paired differences (by seed) of the paper's best against the measured best, or, where they
    are one setting, against the runner-up; the paper's gap is the appendix's difference of the
    two. The measured best is chosen from the same runs, so its lead is optimistic."""

    claim: str
    group: tuple[str, ...] = ("task", "bits")
    over: tuple[str, ...] = ("a", "m")

    def __call__(self, results: Results) -> str:
        first = results.frame.drop_duplicates("entry")
        parts = []
        for key, sub in first.groupby(list(self.group), sort=False):
            label = group_label(dict(zip(self.group, key if isinstance(key, tuple) else (key,),
                                         strict=True)))
            parts.append(self._group(results, label, list(sub.entry)))
        return f"{self.claim}: " + "; ".join(parts) + "."

    def _group(self, results: Results, label: str, entries: Sequence[int]) -> str:
        means: dict[tuple[Any, ...], float] = {}
        entry_of: dict[tuple[Any, ...], int] = {}
        published = []
        for e in entries:
            setting = tuple(results.setting(e)[k] for k in self.over)
            entry_of[setting] = e
            c = cell(results.rows(e))
            if c.mean is not None:
                means[setting] = c.mean
            ref = paper_reference(results, e)
            if ref is not None:
                published.append((ref.value, setting))
        if not means:
            return f"{label}: no completed runs"
        top = max(means.values())
        leaders = [st for st, v in means.items() if tied(v, top)]
        best = " and ".join(_fmt_setting(self.over, st) for st in leaders)
        best += " (tied)" if len(leaders) > 1 else ""
        if not published:
            return f"{label}: measured best {best} (no paper number to compare)"
        paper_best = max(published)[1]
        shown = _fmt_setting(self.over, paper_best)
        if paper_best not in means:
            return f"{label}: measured best {best}; the paper's best {shown} has no completed run"
        if paper_best in leaders:
            others = {st: v for st, v in means.items() if st != paper_best}
            if not others:
                return f"{label}: only the paper's best {shown} has completed runs"
            rival = max(others, key=lambda st: others[st])
            tie = [_fmt_setting(self.over, st) for st in leaders if st != paper_best]
            lead = (f"the measured best is the paper's best {shown}"
                    + (f" (tied with {' and '.join(tie)})" if tie else "")
                    + f"; against the runner-up {_fmt_setting(self.over, rival)}")
        else:
            rival = leaders[0]
            rank = 1 + sum(v > means[paper_best] and not tied(v, means[paper_best])
                           for v in means.values())
            lead = (f"measured best {best}; the paper's best {shown} (rank {rank} of "
                    f"{len(means)}) against it")
        diff, stand_in = paired(results, entry_of[paper_best], entry_of[rival], "test_acc")
        gap = paper_gap(paper_reference(results, entry_of[paper_best]),
                        paper_reference(results, entry_of[rival]))
        v = judge(diff, gap, stand_in)
        text = f"{lead}: {describe(v, 'points', 2, command(results))}"
        if v.verdict == "inconclusive" and paper_best not in leaders:
            text += " (the paper's best lies within the interval of the measured best)"
        if v.verdict == "stand-in":
            label += f" ({STAND_IN_LABEL})"
        return f"{label}: {text}"


def _fmt_setting(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}"
                     for n, v in zip(names, values, strict=True))


@dataclass(frozen=True)
class Tally:
    """One ``Beats`` claim judged in every group of settings (e.g. each task and bit width
    where both sides ran): the verdicts counted, each group named, the seeds an inconclusive
    one needs given."""

    claim: str
    better: Mapping[str, Any]
    worse: Mapping[str, Any]
    metric: str
    higher_is_better: bool = True
    unit: str = ""
    group: tuple[str, ...] = ("task", "bits")
    where: Mapping[str, Any] = field(default_factory=dict)

    def groups(self, results: Results) -> list[dict[str, Any]]:
        """The groups (values of ``group``) of the entries matching ``where``, in order."""
        seen: list[dict[str, Any]] = []
        for e in results.select(**self.where):
            s = results.setting(e)
            g = {k: s[k] for k in self.group}
            if g not in seen:
                seen.append(g)
        return seen

    def verdicts(self, results: Results) -> list[tuple[dict[str, Any], Verdict]]:
        out = []
        for g in self.groups(results):
            beats = Beats(self.claim, {**self.better, **g}, {**self.worse, **g}, self.metric,
                          self.higher_is_better, self.unit)
            v = beats.verdict(results)
            if v is not None:
                out.append((g, v))
        return out

    def __call__(self, results: Results) -> str:
        found = self.verdicts(results)
        if not found:
            return f"{self.claim}: cannot tell: the {results.profile} grid holds no such pair."
        by: dict[str, list[str]] = {}
        needed = []
        for g, v in found:
            name = " at ".join(group_label({k: x}) for k, x in g.items())
            if v.verdict == "contradicted":
                name += f" ({v.reason})"
            elif v.verdict == "inconclusive":
                if v.lo is None:
                    name += " (1 seed, no interval)"
                elif v.seeds_needed is None:
                    name += " (no difference to resolve)"
                else:
                    more = "more than " if v.more_than_max else ""
                    name += f" ({more}{v.seeds_needed} seeds needed)"
                    if not v.more_than_max:
                        needed.append(v.seeds_needed)
            by.setdefault(v.verdict, []).append(name)
        words = {"holds": "holds", "contradicted": "contradicted", "inconclusive": "inconclusive",
                 "stand-in": "stand-in: no verdict", "no data": "no seed completed on both sides"}
        parts = [f"{words[k]} in {len(by[k])} ({', '.join(by[k])})" for k in words if k in by]
        text = f"{self.claim}: " + "; ".join(parts) + f"; of {len(found)} setting" + \
            ("s" if len(found) != 1 else "") + " (95% Student-t intervals of the paired " \
            "differences over seeds)"
        if needed:
            text += f"; `{command(results).format(seeds=max(needed))}` for the most"
        text += "."
        if "stand-in" in by:
            text += f" {STAND_IN_NOTE}"
        return text
