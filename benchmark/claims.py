"""Claims: the sentence at the top of a table saying whether the paper's claim reproduced.

A claim is a callable ``Results -> str``; the spec lists its claims and the table writer puts
their sentences above the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.cells import any_stand_in, cell, decimals_for, fmt_mean_std, tied
from benchmark.labels import STAND_IN_LABEL, STAND_IN_NOTE, bits_label, group_label, task_label
from benchmark.paper import Reference, lookup, same_paper
from benchmark.results import Results


def _paired(results: Results, a: int, b: int, metric: str) -> tuple[np.ndarray, bool]:
    """Per-seed differences a - b over the seeds where both runs completed, and whether any of
    the runs compared used stand-in data."""
    done = results.frame[(results.frame.status == "completed") & results.frame[metric].notna()]
    ra = done[done.entry == a].set_index("seed")
    rb = done[done.entry == b].set_index("seed")
    common = sorted(set(ra.index) & set(rb.index))
    diff = np.array([float(ra[metric][s]) - float(rb[metric][s]) for s in common])
    stand_in = any_stand_in([*ra.stand_in[common], *rb.stand_in[common]])
    return diff, stand_in


def paper_reference(results: Results, entry: int) -> Reference | None:
    s = results.setting(entry)
    return lookup(s["task"], s["method"], s["bits"], s["scheme"], s["a"], s["m"])


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
    ``{"task": "cifar10-vgg", "method": "blaq", "bits": 1}``.
    """

    claim: str
    better: Mapping[str, Any]
    worse: Mapping[str, Any]
    metric: str = "test_acc"
    higher_is_better: bool = True
    unit: str = "points"

    def __call__(self, results: Results) -> str:
        task = self.better.get("task")
        head = f"On {task_label(task)}, {self.claim}:" if task else f"{self.claim}:"
        win, lose = results.select(**self.better), results.select(**self.worse)
        if len(win) != 1 or len(lose) != 1:
            return f"{head} cannot tell: the {results.profile} grid does not hold both settings."
        diff, stand_in = _paired(results, win[0], lose[0], self.metric)
        if not self.higher_is_better:
            diff = -diff
        if diff.size == 0:
            return f"{head} cannot tell: no seed completed for both."
        mean = float(diff.mean())
        unit = f" {self.unit}" if self.unit else ""
        d = 2 if self.metric == "test_acc" else None
        if diff.size >= 2:
            std = float(diff.std(ddof=1))
            by = f"{fmt_mean_std(abs(mean), std, d)}{unit} (paired over {diff.size} seeds)"
            noise = " — within the seed spread" if abs(mean) <= std else ""
        else:
            by = f"{fmt_mean_std(abs(mean), None, d)}{unit} (1 seed, no spread)"
            noise = ""
        verdict = "no, a tie at" if tied(mean, 0) else "yes, by" if mean > 0 else \
            "no, it trails by"
        text = f"{head} {verdict} {by}{noise}."
        if stand_in:
            text += f" {STAND_IN_NOTE}"
        if self.metric == "test_acc":
            pw, pl = paper_reference(results, win[0]), paper_reference(results, lose[0])
            if pw is not None and pl is not None:
                text += f" {_published(pw, pl)}"
        return text


@dataclass(frozen=True)
class Falls:
    """The claim "``metric`` falls as ``along`` grows" among the entries selected by ``where``."""

    claim: str
    where: Mapping[str, Any]
    metric: str
    along: str = "bits"

    def __call__(self, results: Results) -> str:
        points = []
        for e in results.select(**self.where):
            c = cell(results.rows(e), self.metric)
            points.append((results.setting(e)[self.along], c.mean, c.stand_in))
        points.sort(key=lambda p: p[0])
        known = [(x, y) for x, y, _ in points if y is not None]
        stand_in = "" if not any(s for _, y, s in points if y is not None) else \
            f" {STAND_IN_NOTE}"
        head = f"{self.claim}:"
        if len(known) < 2:
            return f"{head} cannot tell: fewer than two settings have completed runs."
        ys = [y for _, y in known]
        falls = all(b < a for a, b in zip(ys, ys[1:], strict=False))
        series = ", ".join(f"{bits_label(x) if self.along == 'bits' else x}: "
                           f"{y:.{decimals_for(y)}f}" for x, y in known)
        if falls:
            return f"{head} yes ({series}).{stand_in}"
        overall = "though lower at the end than at the start" if ys[-1] < ys[0] else \
            "not lower at the end than at the start"
        return f"{head} no, not monotonically, {overall} ({series}).{stand_in}"


@dataclass(frozen=True)
class BestSetting:
    """Where the measured best (a, m) of each task lies, against the paper's best on the same results."""

    claim: str
    group: tuple[str, ...] = ("task", "bits")
    over: tuple[str, ...] = ("a", "m")

    def __call__(self, results: Results) -> str:
        first = results.frame.drop_duplicates("entry")
        parts = []
        for key, sub in first.groupby(list(self.group), sort=False):
            label = group_label(dict(zip(self.group, key if isinstance(key, tuple) else (key,),
                                          strict=True)))
            means: dict[tuple[Any, ...], float] = {}
            published = []
            stand_in = False
            for e in sub.entry:
                setting = tuple(results.setting(e)[k] for k in self.over)
                c = cell(results.rows(e))
                if c.mean is not None:
                    means[setting] = c.mean
                    stand_in |= c.stand_in
                ref = paper_reference(results, e)
                if ref is not None:
                    published.append((ref.value, setting))
            if not means:
                parts.append(f"{label}: no completed runs")
                continue
            if stand_in:
                label += f" ({STAND_IN_LABEL})"
            top = max(means.values())
            leaders = [st for st, v in means.items() if tied(v, top)]
            text = f"{label}: best " + " and ".join(_fmt_setting(self.over, st) for st in leaders)
            text += " (tied)" if len(leaders) > 1 else ""
            if published:
                paper_best = max(published)[1]
                shown = _fmt_setting(self.over, paper_best)
                if paper_best in leaders:
                    text += " (the paper's best is among them)" if len(leaders) > 1 else \
                        " (agrees with the paper)"
                elif paper_best in means:
                    mine = means[paper_best]
                    rank = 1 + sum(v > mine and not tied(v, mine) for v in means.values())
                    ties = sum(tied(v, mine) for v in means.values()) - 1
                    tie_note = f", tied with {ties} other{'s' if ties > 1 else ''}" if ties else ""
                    text += (f" (the paper's best {shown} ranks {rank} of {len(means)} here"
                             f"{tie_note}, {top - mine:.2f} points lower)")
                else:
                    text += f" (the paper's best {shown} has no completed run here)"
            parts.append(text)
        return f"{self.claim}: " + "; ".join(parts) + "."


def _fmt_setting(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}"
                     for n, v in zip(names, values, strict=True))

