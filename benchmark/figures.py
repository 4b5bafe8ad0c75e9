"""Figure renderers: a spec's results of runs -> PNG and PDF files (matplotlib, seaborn).

Each figure has a ``build_*`` function that returns the matplotlib Figure (tests inspect its
axes and lines) and a ``render_*`` function that saves it as ``<key>.png`` and ``<key>.pdf``.
Figures are built without pyplot (the Agg renderer draws the PNG), so rendering neither changes
the caller's backend nor leaves open figures behind.
All share one style: LAQ in blue, BLAQ in orange, 1/2/3/4 bits as solid/dashed/dotted/dash-dot
lines, a mean over seeds with a band from the lowest to the highest seed, and the table footer
(profile, data really used, seeds, runs, code version) under the axes.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmark.atomic import save_figure_atomic
from benchmark.cells import DAGGER
from benchmark.curves import with_convergence
from benchmark.labels import bits_label, footer, method_label, task_label
from benchmark.results import Rendered, Results
from benchmark.runsdb import load_metrics, load_trace

COLORS = {"laq": "#1f6fb4", "blaq": "#e8730c", "lab": "#1f6fb4", "fp": "#555555"}
# LAQ wide under BLAQ narrow: where BLAQ equals LAQ (its plain epochs) both stay visible
METHOD_STYLE = {"laq": {"lw": 3.0, "marker": "o", "ms": 5, "zorder": 2},
                "blaq": {"lw": 1.4, "marker": "s", "ms": 3, "zorder": 3}}
LINESTYLES = {1: "-", 2: "--", 3: ":", 4: "-."}
ACTIVE_SHADE = "#fbe9a6"
WEIGHT_COLORS = ("#0173b2", "#de8f05", "#029e73", "#cc78bc", "#ca9161", "#949494")
_WIDTH = 11.0


@contextlib.contextmanager
def _styled() -> Iterator[None]:
    """The one style of every figure (seaborn's white results, paper context), without global changes."""
    import seaborn as sns  # late: seaborn imports scipy.stats (a second), listings need neither

    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
        yield


def _stand_in(results: Results, task: str | None = None) -> bool:
    f = results.frame if task is None else results.frame[results.frame.task == task]
    return bool((f.stand_in == True).any())  # noqa: E712


def _finish(fig: Figure, results: Results, subtitle: str = "", legend: bool = False) -> None:
    """Lay out the header (title, subtitle, stand-in note, shared legend), the axes and the
    footer notes, in inches so that nothing overlaps whatever the figure's height."""
    spec = results.spec
    header = [f"Figure {spec.number}: {spec.title} ({results.profile} profile)"]
    if subtitle:
        header.append(subtitle)
    if _stand_in(results):
        header.append(f"{DAGGER} stand-in data, not the paper's data set")
    claims = [line for c in claim_lines(results) for line in
              textwrap.wrap(f"Claim. {c}", CLAIM_WIDTH)]
    if claims:  # the verdicts above the axes: the figure grows by their lines
        fig.set_figheight(fig.get_figheight() + 0.2 * len(claims))
        header.extend(claims)
    height = fig.get_figheight()
    title = "\n".join(header[: len(header) - len(claims)])
    fig.suptitle(title, fontsize=11.5, y=1 - 0.1 / height, va="top", linespacing=1.4)
    used = 0.1 + 0.27 * (len(header) - len(claims))
    if claims:
        fig.text(0.01, 1 - (used + 0.05) / height, "\n".join(claims), fontsize=8, va="top",
                 ha="left", linespacing=1.35)
        used += 0.05 + 0.2 * len(claims)
    if legend:
        handles, labels = [], []
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False,
                       bbox_to_anchor=(0.5, 1 - used / height), fontsize=9.5)
            used += 0.4
    notes = "\n".join(textwrap.fill(n, 170) for n in footer(results))
    fig.text(0.01, 0.08 / height, notes, fontsize=6.5, va="bottom", ha="left", color="#333333")
    bottom = 0.08 + 0.125 * (notes.count("\n") + 1) + 0.65
    fig.subplots_adjust(left=0.085, right=0.985, top=1 - (used + 0.35) / height,
                        bottom=bottom / height, hspace=0.5, wspace=0.34)


CLAIM_WIDTH = 175  # characters per line of a claim drawn above a figure's axes


def claim_lines(results: Results) -> list[str]:
    """The verdict sentences of the figure's claims (none for most figures)."""
    return [claim(results) for claim in getattr(results.spec, "claims", ())]


def _save(fig: Figure, results: Results) -> Rendered:
    out = results.out_dir("figures")
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{results.spec.key}.png", out / f"{results.spec.key}.pdf")
    save_figure_atomic(fig, paths[0], dpi=130)
    save_figure_atomic(fig, paths[1], metadata={"CreationDate": None})  # same figure, same bytes
    notes = "\n".join(f"- {n}" for n in footer(results))
    claims = "".join(f"**Claim.** {c}\n" for c in claim_lines(results))
    text = (f"Figure {results.spec.number}: {results.spec.title} ({results.profile} profile)\n"
            f"{claims}{notes}\n" + "".join(f"- written: {p}\n" for p in paths))
    return Rendered(paths, text)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            color="#888888", fontsize=9, wrap=True)


def _method_style(method: str) -> dict[str, object]:
    style = METHOD_STYLE.get(method, {"lw": 1.8, "marker": "o", "ms": 3, "zorder": 2})
    return {"color": COLORS.get(method, "#333333"), **style}


def _entry_label(results: Results, e: int) -> str:
    s = results.setting(e)
    return f"{method_label(s['method'])}, {bits_label(s['bits'])}"


def _first_completed(results: Results, e: int) -> str | None:
    done = results.rows(e)[results.rows(e).status == "completed"]
    return None if done.empty else str(done.run_id.iloc[0])


# ---------------------------------------------------------------------------------------------
# Figure 3: trajectories and update cosines of LAQ


def build_trajectories(results: Results, n_weights: int = 3) -> Figure:
    """Top row: a few weights (full precision, thin; quantized, steps) per iteration; bottom
    row: the cosine between consecutive quantized-weight updates. One column per entry."""
    n = len(results.entries)
    with _styled():
        fig = Figure(figsize=(_WIDTH, 7.2))
        axes = fig.subplots(2, n, squeeze=False, sharex="col")
        palette = WEIGHT_COLORS
        for e in range(n):
            top, bottom = axes[0, e], axes[1, e]
            top.set_title(_entry_label(results, e) + f" ({results.setting(e)['scheme']})")
            bottom.set_xlabel("iteration")
            top.set_ylabel("weight value" if e == 0 else "")
            bottom.set_ylabel("update cosine" if e == 0 else "")
            run = _first_completed(results, e)
            trace = load_trace(results.runs_dir, run) if run else {}
            if "traj_w" not in trace or len(trace.get("iteration", ())) == 0:
                status = ", ".join(sorted(set(results.rows(e).status)))
                _empty(top, f"no trace ({status})")
                _empty(bottom, f"no trace ({status})")
                continue
            it = trace["iteration"]
            for k in range(min(n_weights, len(WEIGHT_COLORS), trace["traj_w"].shape[1])):
                top.plot(it, trace["traj_w"][:, k], color=palette[k], lw=0.8, alpha=0.55)
                top.step(it, trace["traj_w_hat"][:, k], where="post", color=palette[k], lw=1.4)
            # legend entries in grey: the colours tell the weights apart, the style w from ŵ
            top.plot([], [], color="#777777", lw=0.8, alpha=0.7,
                     label="full-precision w (a colour per weight)")
            top.step([], [], color="#777777", lw=1.4, label="quantized ŵ")
            cos = np.asarray(trace.get("cosine", []), dtype=float)
            if cos.size:
                bottom.plot(it[: cos.size], cos, color="#9bbbd9", lw=0.5, label="per iteration")
                window = max(1, cos.size // 25)
                smooth = pd.Series(cos).rolling(window, min_periods=1, center=True).mean()
                bottom.plot(it[: cos.size], smooth, color=COLORS["laq"], lw=1.6,
                            label="moving mean (window: 1/25 of the run)")
                bottom.axhline(0.0, color="black", lw=0.8)
        tasks = ", ".join(task_label(t) for t in dict.fromkeys(results.frame.task))
        _finish(fig, results, f"{tasks}; seed {results.seeds[0]}; a few coordinates of the first "
                "quantized layer",
                legend=True)
    return fig


def render_trajectories(results: Results) -> Rendered:
    return _save(build_trajectories(results), results)


# ---------------------------------------------------------------------------------------------
# per-epoch curves, mean over seeds with a min-max band


def _curves(results: Results, metrics: Sequence[str]) -> pd.DataFrame:
    """Per-epoch metrics of the completed runs, joined with their entry and seed."""
    done = results.frame[results.frame.status == "completed"][["run_id", "entry", "seed"]]
    long = load_metrics(results.runs_dir, done.run_id, metrics)
    return long.merge(done, on="run_id")


def _band(ax: Axes, sub: pd.DataFrame, x: str, y: str, **style: object) -> None:
    """Mean of y over seeds against x, with a band from the lowest to the highest seed."""
    agg = sub.groupby("step").agg(x=(x, "mean"), mean=(y, "mean"), lo=(y, "min"), hi=(y, "max"))
    ax.plot(agg.x, agg["mean"], **style)
    if sub.seed.nunique() > 1:
        ax.fill_between(agg.x, agg.lo, agg.hi, color=style.get("color"), alpha=0.18, lw=0)


def _wide(curves: pd.DataFrame) -> pd.DataFrame:
    wide = curves.pivot_table(index=["entry", "seed", "step"], columns="metric", values="value")
    wide = wide.reset_index()
    wide["epoch"] = wide["step"].astype(float)
    return wide


def _shade_active(ax: Axes, epochs: Sequence[int]) -> None:
    for k, ep in enumerate(epochs):
        ax.axvspan(ep - 0.5, ep + 0.5, color=ACTIVE_SHADE, alpha=0.45, lw=0,
                   label="BLAQ two-stage epoch" if k == 0 else None, zorder=0)


ZIGZAG_PANELS = (  # metric, panel title, y-axis label (the unit)
    ("zz_cosine", "Update cosine", "cosine of consecutive updates"),
    ("zz_flip_rate", "Direction-flip rate", "fraction of coordinates"),
    ("zz_osc_freq", "Oscillation frequency", "events per weight and iteration"),
    ("zz_osc_amplitude", "Oscillation amplitude", "level steps (alpha / n)"),
)


def build_zigzag_curves(results: Results) -> Figure:
    """One panel per zig-zag metric against epoch; a line per method and bit width."""
    names = [m for m, _, _ in ZIGZAG_PANELS]
    wide = _wide(_curves(results, [*names, "blaq_active"]))
    with _styled():
        fig = Figure(figsize=(_WIDTH, 7.6))
        axes = fig.subplots(2, 2, squeeze=False)
        active = _active_epochs(results, wide)
        for ax, (metric, title, unit) in zip(axes.flat, ZIGZAG_PANELS, strict=True):
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylabel(unit)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            _shade_active(ax, active)
            drawn = False
            for e in range(len(results.entries)):
                sub = wide[wide.entry == e]
                if sub.empty or metric not in sub or sub[metric].isna().all():
                    continue
                s = results.setting(e)
                _band(ax, sub.dropna(subset=[metric]), "epoch", metric,
                      **_method_style(s["method"]), ls=LINESTYLES.get(s["bits"], "-"),
                      label=_entry_label(results, e))
                drawn = True
            if not drawn:
                _empty(ax, "no completed run with this metric")
            ax.xaxis.get_major_locator().set_params(integer=True)
        tasks = ", ".join(task_label(t) for t in dict.fromkeys(results.frame.task))
        _finish(fig, results, f"{tasks}; mean over seeds, band from the lowest to the highest seed",
                legend=True)
    return fig


def _active_epochs(results: Results, wide: pd.DataFrame) -> list[int]:
    """The epochs in which BLAQ ran its two-stage step (from the runs' ``blaq_active``)."""
    if "blaq_active" not in wide:
        return []
    blaq = [e for e in range(len(results.entries)) if results.setting(e)["method"] == "blaq"]
    on = wide[wide.entry.isin(blaq) & (wide.blaq_active > 0.5)]
    return sorted({int(s) for s in on.step})


def render_zigzag_curves(results: Results) -> Rendered:
    return _save(build_zigzag_curves(results), results)


# ---------------------------------------------------------------------------------------------
# Figure 5: convergence per task


CONVERGENCE_PANELS = (
    ("train_loss", "epoch", "training loss", "epoch"),
    ("train_loss", "wall_time", "training loss", "wall-clock time (s)"),
    ("test_error", "epoch", "test error (%)", "epoch"),
    ("test_error", "wall_time", "test error (%)", "wall-clock time (s)"),
)


def build_convergence(results: Results) -> Figure:
    """One row per task: training loss and test error against epoch and against wall time."""
    if "conv_epochs" not in results.frame:  # the measures its verdicts read
        results = with_convergence(results)
    wide = _wide(_curves(results, ["train_loss", "test_acc", "wall_time", "blaq_active"]))
    if "test_acc" in wide:
        wide["test_error"] = 100.0 - wide["test_acc"]
    tasks = list(dict.fromkeys(results.frame.task))
    with _styled():
        fig = Figure(figsize=(_WIDTH, 2.55 * len(tasks) + 2.0))
        axes = fig.subplots(len(tasks), 4, squeeze=False)
        for r, task in enumerate(tasks):
            entries = [e for e in range(len(results.entries)) if results.setting(e)["task"] == task]
            rows = wide[wide.entry.isin(entries)]
            mark = f" {DAGGER}" if _stand_in(results, task) else ""
            for c, (metric, x, ylabel, xlabel) in enumerate(CONVERGENCE_PANELS):
                ax = axes[r, c]
                ax.set_title(f"{task_label(task)}{mark}", fontsize=10)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                if x == "epoch":
                    _shade_active(ax, _active_epochs(results, rows))
                drawn = False
                for e in entries:
                    sub = rows[rows.entry == e]
                    if sub.empty or metric not in sub or x not in sub:
                        continue
                    s = results.setting(e)
                    _band(ax, sub.dropna(subset=[metric, x]), x, metric,
                          **_method_style(s["method"]),
                          label=_entry_label(results, e))
                    drawn = True
                if not drawn:
                    _empty(ax, "no completed run")
        _finish(fig, results, "mean over seeds, band from the lowest to the highest seed; times "
                "measured on a machine shared by the grid's --jobs runs", legend=True)
    return fig


def render_convergence(results: Results) -> Rendered:
    """Figure 5, with the convergence verdicts (``curves.with_convergence``) above its axes."""
    results = with_convergence(results)
    return _save(build_convergence(results), results)
