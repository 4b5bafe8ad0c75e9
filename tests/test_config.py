"""RunConfig: validation with one-line reasons, resolution of defaults, and the run id."""

import dataclasses

import pytest

from benchmark.config import RunConfig, run_id
from benchmark.errors import UserError


def test_same_config_same_id_and_defaults_do_not_split_ids():
    explicit = RunConfig(task="mnist-mlp", method="blaq", bits=1, scheme="lab", a=0.6, m=5)
    implicit = RunConfig(task="mnist-mlp", method="blaq", bits=1)
    assert explicit.run_id == implicit.run_id
    assert len(explicit.run_id) == 16
    assert RunConfig(seed=1).run_id != RunConfig(seed=0).run_id


def test_settings_a_method_does_not_use_are_dropped_from_the_id():
    laq = RunConfig(method="laq", bits=2)
    assert laq.resolved().a is None and laq.resolved().m is None
    assert laq.run_id == RunConfig(method="laq", bits=2, a=0.3, m=7).run_id
    assert RunConfig(method="blaq", bits=2, a=0.3).run_id != RunConfig(method="blaq", bits=2).run_id


def test_resolution_fills_scheme_task_defaults_and_epochs():
    from benchmark.tasks import get_task

    r = RunConfig(task="imagenet-resnet18", method="blaq", bits=2, profile="quick").resolved()
    task = get_task("imagenet-resnet18")
    assert r.scheme == "lat-exact"
    assert (r.a, r.m) == (task.default_a, task.default_m) == (0.9, 10)
    assert r.epochs == task.profile("quick").epochs
    assert r.lr_schedule == task.lr_schedules[0]
    assert RunConfig(method="laq", bits=3).resolved().scheme == "laq-linear"
    assert RunConfig(method="fp", bits=1).resolved().bits == 32


def test_run_id_is_md5_of_sorted_key():
    cfg = RunConfig()
    key = cfg.key()
    shuffled = dict(reversed(list(key.items())))
    assert run_id(shuffled) == cfg.run_id


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"task": "nope"}, "unknown task"),
        ({"method": "xnor"}, "unknown method"),
        ({"method": "lab", "bits": 2}, "supports bits 1"),
        ({"method": "laq", "bits": 9}, "bits"),
        ({"method": "laq", "bits": 3, "scheme": "lat-exact"}, "bits"),
        ({"method": "laq", "scheme": "foo"}, "scheme"),
        ({"epochs": -1}, "epochs must be a positive integer"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"seed": -3}, "seed"),
        ({"a": 1.5}, "a (the BLAQ blend) must lie in [0, 1]"),
        ({"m": 0}, "positive integer"),
        ({"blend": "average"}, "blend must be one of"),
        ({"keep_moments": "both"}, "keep_moments must be one of"),
        ({"profile": "huge"}, "unknown profile"),
        ({"lr_schedule": "cosine"}, "lr schedules"),
    ],
)
def test_bad_settings_raise_user_error_with_one_line_reason(changes, needle):
    cfg = dataclasses.replace(RunConfig(), **changes)
    with pytest.raises(UserError) as info:
        cfg.resolved()
    message = str(info.value)
    assert needle.lower() in message.lower()
    assert "\n" not in message


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match="unknown run setting"):
        RunConfig.from_dict({"task": "mnist-mlp", "lerning_rate": 3})
    assert RunConfig.from_dict({"task": "mnist-lenet5"}).task == "mnist-lenet5"


def test_editing_a_profile_changes_the_run_id():
    """The store must never serve a run made with an older definition of the profile."""
    from benchmark.tasks import TASKS, get_task

    task = get_task("mnist-mlp")
    before = RunConfig(task="mnist-mlp", profile="quick").run_id
    quick = dataclasses.replace(task.profile("quick"), width=task.profile("quick").width * 2)
    TASKS["mnist-mlp"] = dataclasses.replace(task, profiles={**task.profiles, "quick": quick})
    try:
        assert RunConfig(task="mnist-mlp", profile="quick").run_id != before
        assert RunConfig(task="mnist-mlp", profile="smoke").run_id == RunConfig(
            task="mnist-mlp", profile="smoke").run_id
    finally:
        TASKS["mnist-mlp"] = task
    assert RunConfig(task="mnist-mlp", profile="quick").run_id == before


def _stored_configs():
    """(run dir, the config it was trained with) for every run of the committed stores."""
    from pathlib import Path

    from benchmark.store import list_run_dirs, read_run

    repo = Path(__file__).resolve().parents[1]
    for store in (repo / "tests" / "data" / "store", repo / "results" / "runs-quick"):
        for run_dir in list_run_dirs(store):
            record = read_run(run_dir)
            config = record.info.get("config") or record.config
            yield run_dir, config


def test_run_ids_of_the_committed_stores_are_unchanged():
    """Every stored run's config hashes to its directory name (the stores are still served)."""
    checked = 0
    for run_dir, config in _stored_configs():
        cfg = RunConfig.from_dict(config)
        assert cfg.run_id == run_dir.name, run_dir
        assert cfg.key() == config, run_dir  # the key itself, not only its hash
        checked += 1
    assert checked >= 150  # both stores were found (21 + 157 runs when this was written)


def test_options_are_the_methods_own_and_given_as_keywords_or_a_dict():
    as_keywords = RunConfig(method="blaq", a=0.3, m=7, blend="gradient")
    as_dict = RunConfig(method="blaq", options={"a": 0.3, "m": 7, "blend": "gradient"})
    assert as_keywords == as_dict and as_keywords.run_id == as_dict.run_id
    r = as_keywords.resolved()
    assert r.options == {"a": 0.3, "m": 7, "blend": "gradient", "keep_moments": "blended"}
    assert (r.a, r.m, r.blend, r.keep_moments) == (0.3, 7, "gradient", "blended")
    assert RunConfig(method="laq", a=0.3).resolved().options == {}  # another method's: dropped
    with pytest.raises(UserError, match="method 'blaq' has no option momentum"):
        RunConfig(method="blaq", momentum=0.9).resolved()
    with pytest.raises(UserError, match="unknown run setting"):
        RunConfig.from_dict({"method": "blaq", "momentum": 0.9})


def test_blaq_checks_its_options_once_with_one_message_each():
    """The config and the optimizer say the same thing about the same bad value."""
    import torch

    from benchmark.quant import BLAQ

    bad = {"a": (1.5, "a (the BLAQ blend) must lie in [0, 1], not 1.5"),
           "m": (0, "m (the BLAQ period in epochs) must be a positive integer, not 0"),
           "blend": ("average", "blend must be one of moment, gradient, not 'average'"),
           "keep_moments": ("both", "keep_moments must be one of blended, current, not 'both'")}
    for name, (value, message) in bad.items():
        with pytest.raises(UserError) as from_config:
            RunConfig(method="blaq", **{name: value}).resolved()
        with pytest.raises(UserError) as from_optimizer:
            BLAQ(torch.nn.Linear(2, 2), **{name: value})
        assert str(from_config.value) == str(from_optimizer.value) == message


def test_speed_options_are_in_the_id_only_when_set():
    """``rounds`` and ``compile`` change a run's numbers: a set one splits the id; unset (or at
    its default: rounds=10 is the spec's rule, compile=False the eager path) it is left out of
    the key, so every run made before the options existed keeps its id."""
    for method in ("laq", "blaq", "lab", "bwn", "twn"):
        bits = 2 if method == "twn" else 1
        plain = RunConfig(method=method, bits=bits)
        assert "rounds" not in plain.key() and "compile" not in plain.key()
        same = RunConfig(method=method, bits=bits, rounds=10, compile=False)
        assert same.run_id == plain.run_id and same.key() == plain.key()
        capped = RunConfig(method=method, bits=bits, rounds=1)
        assert capped.run_id != plain.run_id and capped.key()["rounds"] == 1
        compiled = RunConfig(method=method, bits=bits, compile=1)  # 1/0 as a command line gives
        assert compiled.key()["compile"] is True
        assert compiled.run_id == RunConfig(method=method, bits=bits, compile=True).run_id
        assert compiled.run_id not in (plain.run_id, capped.run_id)
    blaq = RunConfig(method="blaq", rounds=2).resolved().options
    assert blaq == {"a": 0.6, "m": 5, "blend": "moment", "keep_moments": "blended", "rounds": 2}
    assert RunConfig(method="fp", rounds=1).resolved().options == {}  # not the method's: dropped


def test_speed_options_are_checked_as_the_optimizer_checks_them():
    import torch

    from benchmark.quant import LossAwareAdam

    bad = {"rounds": (0, "rounds (the alternation cap per step) must be a positive integer or "
                         "None, not 0"),
           "compile": ("yes", "compile must be True or False, not 'yes'")}
    for name, (value, message) in bad.items():
        for method in ("laq", "blaq"):
            with pytest.raises(UserError) as from_config:
                RunConfig(method=method, **{name: value}).resolved()
            assert str(from_config.value) == message
        with pytest.raises(UserError) as from_optimizer:
            LossAwareAdam(torch.nn.Linear(2, 2), **{name: value})
        assert str(from_optimizer.value) == message


def test_the_optimizer_of_a_run_takes_its_speed_options():
    import torch

    from benchmark.methods import get_method

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    for method in ("laq", "blaq"):
        config = RunConfig(method=method, bits=3, rounds=1).resolved()
        opt = get_method(method).make_optimizer(config, model, 1e-3)
        assert opt.rounds == 1 and opt.compile is False
        default = get_method(method).make_optimizer(RunConfig(method=method, bits=3).resolved(),
                                                    model, 1e-3)
        assert default.rounds is None
