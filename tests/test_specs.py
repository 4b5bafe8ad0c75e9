"""Specs: the registry, seeds, the grids per profile, shared runs, and the quick-profile budget."""

import re

import pytest

from benchmark.errors import UserError
from benchmark.specs import (
    SPECS,
    Entry,
    Spec,
    default_seeds,
    get_spec,
    register_spec,
)
from benchmark.tables import render_method_table
from benchmark.tasks import get_task

QUICK_TABLE_BUDGET_S = 15 * 60  # each table's quick grid, from an empty store
QUICK_TOTAL_BUDGET_S = 60 * 60  # all tables and figures together
PARALLEL = 2                    # two runs at a time on the 2-core machine


def test_the_papers_tables_and_figures_are_registered():
    assert [k for k in SPECS if k.startswith("table")] == [f"table{n}" for n in range(1, 8)]
    assert [k for k in SPECS if k.startswith("figure")] == [f"figure{n}" for n in (3, 4, 5, 6)]
    for spec in SPECS.values():
        assert spec.title and spec.paper and spec.description
        assert get_spec(spec.kind, spec.number) is spec


def test_unknown_numbers_name_the_valid_ones():
    with pytest.raises(UserError, match=r"no table 9; choose one of 1, 2, 3, 4, 5, 6, 7$"):
        get_spec("table", 9)
    with pytest.raises(UserError, match=r"no figure 1; choose one of 3, 4, 5, 6$"):
        get_spec("figure", 1)


def test_default_seeds_and_seed_validation():
    assert default_seeds("smoke") == (0,)
    assert len(default_seeds("quick")) >= 3  # a spread, and a t interval on two degrees of freedom
    assert len(default_seeds("paper")) >= 3
    spec = SPECS["table3"]
    with pytest.raises(UserError, match="unknown profile"):
        spec.configs("huge")
    for bad in ([], [-1], ["0"], [True]):
        with pytest.raises(UserError, match="seeds must be non-negative integers"):
            spec.configs("smoke", bad)


def test_configs_are_entries_times_seeds_with_unique_run_ids():
    for spec in SPECS.values():
        for profile in ("smoke", "quick", "paper"):
            configs = spec.configs(profile, seeds=(0, 1))
            ids = [c.run_id for c in configs]
            seeds = 1 if spec.max_seeds == 1 else 2
            assert len(set(ids)) == len(ids) == len(spec.entries(profile)) * seeds, (spec.key, profile)
            assert {c.profile for c in configs} == ({profile} if configs else set())


def test_figure_with_one_seed_takes_the_first():
    configs = SPECS["figure3"].configs("quick", seeds=(4, 7))
    assert {c.seed for c in configs} == {4}


def test_table2_rows_are_the_papers_methods():
    rows = [(c.method, c.bits, c.resolved().scheme) for c in SPECS["table2"].configs("paper", (0,))]
    assert rows == [("fp", 32, None), ("bwn", 1, "bwn"), ("twn", 2, "twn"), ("lab", 1, "lab"),
                    ("laq", 2, "lat-exact"), ("laq", 2, "lat-approx"), ("laq", 3, "laq-linear"),
                    ("laq", 3, "laq-log"), ("blaq", 1, "lab"), ("blaq", 2, "lat-exact"),
                    ("blaq", 3, "laq-linear")]
    assert {c.task for c in SPECS["table2"].configs("paper", (0,))} == {"cifar10-vgg"}


def test_table1_claims_do_not_attribute_their_hypothesis_to_the_paper():
    """The paper's Table 1 numbers are not available (docs/spec.md): the falling zig-zag is the
    suite's own hypothesis, and no Table 1 claim says the paper's Table 1 shows it."""
    claims = [c.claim for c in SPECS["table1"].claims]
    assert "the suite's own hypothesis, not taken from the paper" in claims[0]
    for text in claims:
        assert "paper's Table 1" not in text and "premise of the paper" not in text


def test_table6_paper_grid_is_the_appendix_grid():
    configs = [c.resolved() for c in SPECS["table6"].configs("paper", (0,))]
    assert len(configs) == 6 * 2 * 8
    assert {c.a for c in configs} == {0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3}
    assert {c.m for c in configs} == {5, 10}
    assert {(c.task, c.bits) for c in configs} == {
        ("mnist-mlp", 1), ("mnist-lenet5", 1), ("cifar10-vgg", 1), ("svhn-net", 1),
        ("imagenet-resnet18", 1), ("imagenet-resnet18", 2)}


def _ids(keys, profile="quick"):
    return {c.run_id for k in keys for c in SPECS[k].configs(profile)}


def test_figures_reuse_the_tables_runs():
    tables = _ids([f"table{n}" for n in range(1, 7)])
    assert _ids(["figure3", "figure4"]) <= tables
    # Figure 5 adds only LAQ at 1 bit where no table runs it: three small models (the tables
    # run LAB there) and ResNet-18 (Table 1 runs it on the MNIST MLP in quick)
    extra = _ids(["figure5"]) - tables
    assert {c.task for c in SPECS["figure5"].configs("quick") if c.run_id in extra} == {
        "mnist-lenet5", "cifar10-vgg", "svhn-net", "imagenet-resnet18"}
    assert len(extra) == 4 * len(default_seeds("quick"))
    # in quick, Table 3's MNIST MLP runs serve Table 1 (LAQ 2 and 3 bits, BLAQ 1-3 bits)...
    assert len(_ids(["table1"]) & _ids(["table3"])) == 5 * len(default_seeds("quick"))
    # ... in paper, Table 5's BLAQ and LAQ runs do (LAQ 2 bits, BLAQ 1 and 2 bits)
    assert len(_ids(["table1"], "paper") & _ids(["table5"], "paper")) == 3 * len(
        default_seeds("paper"))


def _seconds(configs):
    """Estimated single-thread seconds: the task's ``est_seconds`` (plain Adam), x1.15 for a
    quantized method (the optimizer's speed target), and BLAQ's active epochs counted twice."""
    total = 0.0
    for c in (c.resolved() for c in configs.values()):
        cost = get_task(c.task).profile(c.profile).est_seconds
        if c.method != "fp":
            cost *= 1.15
        if c.method == "blaq":
            cost *= 1 + (c.epochs // c.m) / c.epochs
        total += cost
    return total


def test_quick_grids_fit_the_time_budget():
    """Each table's quick grid within 15 minutes, everything within 60 (two runs at a time).

    The per-run estimate is ``_seconds``; tasks measure ``est_seconds`` on one thread.
    """
    everything = {}
    for spec in SPECS.values():
        configs = {c.run_id: c for c in spec.configs("quick")}
        everything.update(configs)
        if spec.kind == "table":
            assert _seconds(configs) / PARALLEL <= QUICK_TABLE_BUDGET_S, spec.key
    assert _seconds(everything) / PARALLEL <= QUICK_TOTAL_BUDGET_S


def test_smoke_grids_are_tiny():
    for spec in SPECS.values():
        configs = spec.configs("smoke")
        if spec.key == "figure6":  # the toy problem trains nothing
            assert configs == []
            continue
        assert 1 <= len(configs) <= 6, spec.key
        assert all(get_task(c.task).profile("smoke").est_seconds <= 5 for c in configs)


def test_register_spec_checks_and_a_user_table_renders(tmp_path):
    entries = (Entry("mnist-mlp", "lab", 1), Entry("mnist-mlp", "blaq", 1))
    with pytest.raises(UserError, match="kind must be one of"):
        register_spec(Spec("t", "plot", 8, "t", "p", "d", {"paper": entries}, render_method_table))
    with pytest.raises(UserError, match="needs a 'paper' grid"):
        register_spec(Spec("t", "table", 8, "t", "p", "d", {"quick": entries}, render_method_table))
    with pytest.raises(UserError, match="unknown profile"):
        register_spec(Spec("t", "table", 8, "t", "p", "d", {"paper": entries, "fast": entries},
                           render_method_table))
    spec = Spec("user8", "table", 8, "My table", "not in the paper", "LAB against BLAQ",
                {"paper": entries}, render_method_table)
    try:
        assert register_spec(spec) is spec and get_spec("table", 8) is spec
        out = spec.render(tmp_path / "runs", "quick", out_root=tmp_path)
        assert out.paths[0] == tmp_path / "tables" / "user8.md"
        assert len(re.findall(r"\| +missing \|", out.text)) == 2  # empty store: all missing
    finally:
        SPECS.pop("user8")


def test_a_users_spec_of_a_taken_number_is_the_one_served():
    entries = (Entry("mnist-mlp", "lab", 1),)
    mine = Spec("mine7", "table", 7, "Mine", "not in the paper", "d", {"paper": entries},
                render_method_table)
    try:
        register_spec(mine)
        assert get_spec("table", 7) is mine
    finally:
        SPECS.pop("mine7")
    assert get_spec("table", 7) is SPECS["table7"]


def test_beyond_the_paper_specs_say_so_and_cost_no_runs_of_their_own():
    for key in ("table7", "figure6"):
        assert SPECS[key].paper.startswith("beyond the paper")
    assert SPECS["figure6"].configs("quick") == [] and SPECS["figure6"].configs("paper") == []
    for profile in ("smoke", "quick", "paper"):
        others = {c.run_id for k, s in SPECS.items() if k != "table7"
                  for c in s.configs(profile, (0,))}
        mine = {c.run_id for c in SPECS["table7"].configs(profile, (0,))}
        assert mine and mine <= others, profile


def test_table7_pairs_laq_and_blaq_at_1_bit_and_the_other_widths_the_grids_hold():
    pairs = {}
    for c in (c.resolved() for c in SPECS["table7"].configs("quick", (0,))):
        pairs.setdefault((c.task, c.bits), set()).add((c.method, c.scheme))
    assert all(len({s for _, s in v}) == 1 and {m for m, _ in v} == {"laq", "blaq"}
               for v in pairs.values())
    assert {b for t, b in pairs if t == "mnist-mlp"} == {1, 2, 3, 4}  # Table 1's quick task
    assert {b for t, b in pairs if t == "imagenet-resnet18"} == {1, 2}
    assert {t for t, b in pairs if b == 1} == {"mnist-mlp", "mnist-lenet5", "cifar10-vgg",
                                               "svhn-net", "imagenet-resnet18"}
