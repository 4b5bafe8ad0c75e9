"""The paper's toy problem (docs/spec.md section 3) as Figure 6: f(w) = c |w|^(3/2) on one
binary weight, minimised by the real optimizers of ``benchmark.quant``.

The model is one ``nn.Linear(1, 1, bias=False)`` fed the input 1, so its output is the
quantized weight w_hat and the loss is ``c * |w_hat|^1.5``. LAQ is ``LossAwareAdam`` with the
LAB quantizer (1 bit) and no momentum (betas (0, 0.999): the proximal Newton step with Adam's
curvature that the paper's argument uses); BLAQ is ``BLAQ`` with the same settings, period
m = 1 (every step two-stage) and the blend a. With one weight the binary quantizer's scale is
|w|, so w_hat = w: what jumps is the step itself. LAQ's iterate ends up jumping between two
points, +x and -x, for ever; BLAQ's blend with the look-ahead gradient shrinks the jump, and
for a small enough a stops it (the iterate then rests on one side).

Costs no training runs: the figure is the same in every profile and needs no run store.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from benchmark.atomic import save_figure_atomic
from benchmark.results import Rendered, Results

C = 1.0
W0 = 0.5
LR = 0.1
BETAS = (0.0, 0.999)
STEPS = 200
A_VALUES = (0.9, 0.6, 0.3)
TAIL = 40  # the last steps, shown enlarged


@dataclass(frozen=True)
class Trajectory:
    """One optimizer on the toy problem: w_hat and the loss after each step (1-based)."""

    label: str
    w_hat: np.ndarray
    loss: np.ndarray

    def sign_flips(self, last: int) -> int:
        """How often w_hat changed sign in the last ``last`` steps."""
        tail = self.w_hat[-last:]
        return int((tail[1:] * tail[:-1] < 0).sum())

    def jump(self, last: int) -> float:
        """Mean |w_hat(t+1) - w_hat(t)| over the last ``last`` steps."""
        return float(np.abs(np.diff(self.w_hat[-last:])).mean())


def simulate(method: str, a: float = 0.6, steps: int = STEPS, lr: float = LR, c: float = C,
             w0: float = W0) -> Trajectory:
    """Run LAQ (``method="laq"``) or BLAQ (``"blaq"``, blend ``a``, m = 1) on c |w|^1.5."""
    import torch
    from torch import nn

    from benchmark.quant.optim import BLAQ, LossAwareAdam

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(w0)
    if method == "laq":
        opt: LossAwareAdam = LossAwareAdam(model, "lab", bits=1, lr=lr, betas=BETAS)
        label = "LAQ"
    elif method == "blaq":
        opt = BLAQ(model, "lab", bits=1, lr=lr, betas=BETAS, a=a, m=1)
        label = f"BLAQ, a={a:g}"
    else:
        raise ValueError(f"method must be 'laq' or 'blaq', not {method!r}")
    opt.set_epoch(0)
    x = torch.ones(1, 1, dtype=model.weight.dtype)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = c * model(x).abs().pow(1.5).sum()
        loss.backward()
        return loss

    w_hat = []
    for _ in range(steps):
        opt.step(closure)
        w_hat.append(float(model.weight.detach().item()))
    w = np.asarray(w_hat)
    return Trajectory(label, w, c * np.abs(w) ** 1.5)


def trajectories(a_values: Sequence[float] = A_VALUES, steps: int = STEPS) -> list[Trajectory]:
    """LAQ, then BLAQ for each a."""
    return [simulate("laq", steps=steps), *(simulate("blaq", a, steps=steps) for a in a_values)]


BLAQ_SHADES = ("#f4a259", "#e8730c", "#9c4a04")


def build_toy(results: Results | None = None, a_values: Sequence[float] = A_VALUES) -> Figure:
    """Three panels: w_hat over all steps, w_hat over the last steps, the loss (log scale)."""
    from benchmark.figures import COLORS, _styled

    runs = trajectories(a_values)
    steps = np.arange(1, STEPS + 1)
    styles = [{"color": COLORS["laq"], "lw": 2.4, "zorder": 2}] + [
        {"color": BLAQ_SHADES[k % len(BLAQ_SHADES)], "lw": 1.3, "zorder": 3}
        for k in range(len(a_values))]
    with _styled():
        fig = Figure(figsize=(11.0, 6.0))
        axes = fig.subplots(1, 3, squeeze=True)
        for run, style in zip(runs, styles, strict=True):
            axes[0].plot(steps, run.w_hat, label=run.label, **style)
            axes[1].plot(steps[-TAIL:], run.w_hat[-TAIL:], marker="o", ms=2.5, **style)
            axes[2].semilogy(steps, np.maximum(run.loss, 1e-12), **style)
        for ax in axes[:2]:
            ax.axhline(0.0, color="black", lw=0.8)
        axes[0].set(title="Iterate w_hat (all steps)", xlabel="step", ylabel="w_hat")
        axes[1].set(title=f"Iterate w_hat (last {TAIL} steps)", xlabel="step", ylabel="w_hat")
        axes[2].set(title="Loss c |w_hat|^1.5", xlabel="step", ylabel="loss (log scale)")
        number = getattr(getattr(results, "spec", None), "number", 6)
        title = getattr(getattr(results, "spec", None), "title", "The paper's toy problem")
        lines = [f"Figure {number}: {title}", _summary(runs)]
        fig.suptitle("\n".join(textwrap.fill(x, 125) for x in lines), fontsize=10.5, y=0.985,
                     va="top", linespacing=1.35)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(runs),
                   frameon=False, bbox_to_anchor=(0.5, 0.86), fontsize=9.5)
        notes = "\n".join(textwrap.fill(n, 170) for n in notes_lines())
        fig.text(0.01, 0.015, notes, fontsize=6.5, va="bottom", ha="left", color="#333333")
        fig.subplots_adjust(left=0.07, right=0.985, top=0.75, bottom=0.19, wspace=0.3)
    return fig


def _summary(runs: Sequence[Trajectory]) -> str:
    parts = [f"{run.label}: {run.sign_flips(TAIL)} sign changes, mean jump {run.jump(TAIL):.2g}, "
             f"loss {run.loss[-1]:.2g}" for run in runs]
    return f"Over the last {TAIL} steps: " + "; ".join(parts) + "."


def notes_lines() -> list[str]:
    return [
        f"No training runs: made by benchmark.quant's LossAwareAdam (LAQ; LAB quantizer, 1 bit, "
        f"lr {LR:g}, betas {BETAS}) and BLAQ (the same, period m = 1, blend a as labelled) on "
        f"one weight, w0 = {W0:g}, c = {C:g}, {STEPS} steps; the same in every profile.",
        "With one weight the binary scale is |w|, so w_hat = w; the loss is c |w_hat|^1.5 "
        "(docs/spec.md section 3, the paper's argument).",
    ]


def render_toy(results: Results) -> Rendered:
    """Figure 6: draw the toy problem and save it as ``<key>.png`` and ``.pdf``."""
    fig = build_toy(results)
    out = results.out_dir("figures")
    out.mkdir(parents=True, exist_ok=True)
    key = results.spec.key
    paths = (out / f"{key}.png", out / f"{key}.pdf")
    save_figure_atomic(fig, paths[0], dpi=130)
    save_figure_atomic(fig, paths[1], metadata={"CreationDate": None})
    runs = trajectories()
    text = (f"Figure {results.spec.number}: {results.spec.title}\n- {_summary(runs)}\n"
            + "".join(f"- {n}\n" for n in notes_lines())
            + "".join(f"- written: {p}\n" for p in paths))
    return Rendered(paths, text)
