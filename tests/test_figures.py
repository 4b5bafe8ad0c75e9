"""Figures 3-5 rendered from the committed miniature run store (real smoke runs): the files are
written, the PNGs decode, and each figure has the expected axes, lines and labels."""

from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from benchmark.figures import (
    CONVERGENCE_PANELS,
    ZIGZAG_PANELS,
    build_convergence,
    build_trajectories,
    build_zigzag_curves,
)
from benchmark.specs import SPECS

DATA = Path(__file__).parent / "data"
SEEDS = (0, 1)


@pytest.fixture
def in_data(monkeypatch):
    monkeypatch.chdir(DATA)  # the store is then named "store" in every footer, as in the goldens


def _grid(key, tmp_path, runs_dir="store"):
    return SPECS[key].results(runs_dir, "smoke", SEEDS, out_root=tmp_path)


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]


@pytest.mark.parametrize("key", ["figure3", "figure4", "figure5"])
def test_figures_are_written_as_png_and_pdf(key, tmp_path, in_data):
    out = SPECS[key].render("store", "smoke", SEEDS, out_root=tmp_path)
    assert [p.name for p in out.paths] == [f"{key}.png", f"{key}.pdf"]
    assert all(p.parent == tmp_path / "figures" / "smoke" for p in out.paths)
    image = matplotlib.image.imread(out.paths[0])
    assert image.ndim == 3 and image.shape[0] > 500 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert out.paths[1].read_bytes().startswith(b"%PDF")
    assert f"Figure {SPECS[key].number}" in out.text and "Profile: smoke" in out.text
    assert plt.get_fignums() == []  # no pyplot figure left open


def test_figure3_draws_trajectories_and_cosines_per_bit_width(tmp_path, in_data):
    grid = _grid("figure3", tmp_path)
    fig = build_trajectories(grid)
    axes = fig.axes
    assert len(axes) == 2 * len(grid.entries)
    top, bottom = axes[0], axes[len(grid.entries)]
    assert top.get_title().startswith("LAQ, 1 bit")
    assert top.get_ylabel() == "weight value" and bottom.get_xlabel() == "iteration"
    # three tracked weights, each as a full-precision line and a quantized step line
    assert len(_data_lines(top)) == 6
    assert bottom.get_ylabel() == "update cosine" and len(_data_lines(bottom)) == 2
    assert fig.texts and "Profile: smoke" in fig.texts[-1].get_text()


def test_figure4_has_a_panel_per_metric_and_a_line_per_method(tmp_path, in_data):
    grid = _grid("figure4", tmp_path)
    fig = build_zigzag_curves(grid)
    assert [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes] == [
        (title, unit) for _, title, unit in ZIGZAG_PANELS]
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch"
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert labels == ["LAQ, 1 bit", "BLAQ, 1 bit"]
        assert all(len(ln.get_xdata()) == 2 for ln in ax.get_lines())  # two smoke epochs
        assert len(ax.patches) == 2  # BLAQ runs with m = 1 in smoke: both epochs are shaded
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "BLAQ two-stage epoch", "LAQ, 1 bit", "BLAQ, 1 bit"]


def test_figure5_plots_loss_and_error_against_epoch_and_time(tmp_path, in_data):
    grid = _grid("figure5", tmp_path)
    fig = build_convergence(grid)
    tasks = list(dict.fromkeys(grid.frame.task))
    assert len(fig.axes) == 4 * len(tasks)
    for ax, (_, _, ylabel, xlabel) in zip(fig.axes, CONVERGENCE_PANELS * len(tasks), strict=True):
        assert (ax.get_xlabel(), ax.get_ylabel()) == (xlabel, ylabel)
        assert [ln.get_label() for ln in ax.get_lines()] == ["LAQ, 1 bit", "BLAQ, 1 bit"]
    loss_vs_time = fig.axes[1].get_lines()[0]
    assert (loss_vs_time.get_xdata() > 0).all()  # wall-clock seconds, not epochs
    error = fig.axes[2].get_lines()[0].get_ydata()
    assert ((error >= 0) & (error <= 100)).all()


def test_figures_from_an_empty_store_say_so(tmp_path):
    for key, build in (("figure3", build_trajectories), ("figure4", build_zigzag_curves),
                       ("figure5", build_convergence)):
        fig = build(_grid(key, tmp_path, tmp_path / "empty"))
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts and all(t.startswith("no ") for t in texts), key
        assert not any(_data_lines(ax) for ax in fig.axes)


def test_figure5_states_the_convergence_verdicts(tmp_path, in_data):
    out = SPECS["figure5"].render("store", "smoke", SEEDS, out_root=tmp_path)
    claims = [ln for ln in out.text.splitlines() if ln.startswith("**Claim.**")]
    assert len(claims) == 2
    assert claims[0].startswith("**Claim.** BLAQ reaches LAQ's lowest training loss in fewer "
                                "epochs than LAQ at 1 bit: inconclusive in 1 (MNIST MLP at 1 bit")
    fig = build_convergence(SPECS["figure5"].results("store", "smoke", SEEDS, out_root=tmp_path))
    drawn = " ".join(t.get_text() for t in fig.texts)
    assert "Claim. BLAQ reaches LAQ's lowest training loss" in drawn  # above the axes
    assert "inconclusive in 1" in drawn and "stand-in: no verdict" not in drawn.split("Claim.")[0]
