"""The paper's toy problem (Figure 6): what the real optimizers do on f(w) = c |w|^(3/2)."""

from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from benchmark.specs import SPECS
from benchmark.toy import TAIL, build_toy, simulate, trajectories


def test_laq_jumps_between_two_points_for_ever():
    laq = simulate("laq", steps=400)
    tail = laq.w_hat[-100:]
    assert (tail[1:] * tail[:-1] < 0).all()  # a sign change at every step
    # the two points: +x and -x, the same magnitude, and the jump does not die out
    np.testing.assert_allclose(np.abs(tail), np.abs(tail).mean(), rtol=0.05)
    assert abs(laq.w_hat[-1]) >= 0.9 * abs(laq.w_hat[-200])
    assert laq.jump(TAIL) == pytest.approx(2 * np.abs(tail).mean(), rel=0.05)


@pytest.mark.parametrize("a", [0.6, 0.3])
def test_blaq_with_a_small_blend_stops_the_jump(a):
    laq, blaq = simulate("laq", steps=400), simulate("blaq", a, steps=400)
    assert blaq.sign_flips(100) == 0
    assert blaq.jump(100) < 0.01 * laq.jump(100)


def test_blaq_with_a_large_blend_still_jumps_but_less():
    laq, blaq = simulate("laq"), simulate("blaq", 0.9)
    assert blaq.sign_flips(TAIL) == TAIL - 1  # still every step ...
    assert blaq.jump(TAIL) < 0.8 * laq.jump(TAIL)  # ... by a smaller jump


def test_a_equal_to_one_is_laq():
    np.testing.assert_array_equal(simulate("blaq", 1.0).w_hat, simulate("laq").w_hat)


def test_bad_method_is_refused():
    with pytest.raises(ValueError, match="'laq' or 'blaq'"):
        simulate("sgd")


def test_the_figure_draws_what_the_runs_show(tmp_path):
    runs = trajectories()
    fig = build_toy(SPECS["figure6"].results(tmp_path / "none", "quick", out_root=tmp_path))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "Iterate w_hat (all steps)", f"Iterate w_hat (last {TAIL} steps)", "Loss c |w_hat|^1.5"]
    for ax in axes:
        assert len(ax.get_lines()) - (1 if ax is not axes[2] else 0) == len(runs)
    first = axes[0].get_lines()[0]
    np.testing.assert_array_equal(first.get_ydata(), runs[0].w_hat)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [r.label for r in runs]
    assert "LAQ: 39 sign changes" in fig._suptitle.get_text()


def test_rendering_costs_no_runs_and_writes_png_and_pdf(tmp_path):
    spec = SPECS["figure6"]
    assert spec.configs("quick") == []
    out = spec.render(tmp_path / "no-store", "quick", out_root=tmp_path)
    assert [p.name for p in out.paths] == ["figure6.png", "figure6.pdf"]
    image = matplotlib.image.imread(out.paths[0])
    assert image.ndim == 3 and image[..., :3].std() > 0.05
    assert out.paths[1].read_bytes().startswith(b"%PDF")
    assert "Figure 6" in out.text and "No training runs" in out.text
    assert not Path(tmp_path / "no-store").exists()  # nothing read, nothing written there
    assert plt.get_fignums() == []
