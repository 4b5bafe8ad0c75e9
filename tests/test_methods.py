"""The method registry: lookup, bit widths, default schemes, user registration."""

import pytest

from benchmark.errors import UserError
from benchmark.methods import METHODS, Method, get_method, register_method


def test_registry_has_the_paper_methods():
    assert {"fp", "bwn", "twn", "lab", "laq", "blaq"} <= set(METHODS)


@pytest.mark.parametrize(
    ("bits", "scheme"), [(1, "lab"), (2, "lat-exact"), (3, "laq-linear"), (8, "laq-linear")]
)
def test_loss_aware_default_schemes(bits, scheme):
    assert get_method("laq").scheme_for(bits) == scheme
    assert get_method("blaq").scheme_for(bits) == scheme


def test_unknown_method_names_the_choices():
    with pytest.raises(UserError, match="choose one of .*blaq"):
        get_method("xnor")


def test_bits_outside_the_method_are_refused():
    with pytest.raises(UserError, match="supports bits 2"):
        get_method("twn").scheme_for(1)


def test_user_registered_method_is_found():
    mine = Method("laq-log", "LAQ (log)", "loss-aware", (3,), ("laq-log",), lambda b: "laq-log", "x")
    try:
        register_method(mine)
        assert get_method("laq-log").scheme_for(3) == "laq-log"
    finally:
        METHODS.pop("laq-log")


def test_a_registration_is_checked_before_it_is_added():
    import dataclasses

    with pytest.raises(UserError, match="unknown step 'sgd'"):
        register_method(Method("x", "X", "sgd", (1,)))
    with pytest.raises(UserError, match="non-empty name"):
        register_method(Method(" x", "X", "adam", (32,)))

    @dataclasses.dataclass(frozen=True)
    class Clashing:
        seed: int = 0

        def resolved(self, task):
            return self

    with pytest.raises(UserError, match="option name.*seed.*run config fields"):
        register_method(Method("x", "X", "adam", (32,), options=Clashing))
    assert "x" not in METHODS


def test_a_method_with_its_own_options_resolves_them_and_hashes_them():
    import dataclasses

    from benchmark.config import RunConfig

    @dataclasses.dataclass(frozen=True)
    class ClipOptions:
        clip: float | None = None

        def resolved(self, task):
            clip = 1.0 if self.clip is None else self.clip
            if not clip > 0:
                raise UserError(f"clip must be positive, not {clip}")
            return ClipOptions(clip)

    register_method(Method("clipped", "Clipped", "adam", (32,), options=ClipOptions))
    try:
        cfg = RunConfig(method="clipped", profile="smoke")
        assert cfg.resolved().options == {"clip": 1.0}
        assert cfg.key()["clip"] == 1.0 and cfg.key()["a"] is None
        assert cfg.run_id == RunConfig(method="clipped", profile="smoke", clip=1.0).run_id
        assert cfg.run_id != RunConfig(method="clipped", profile="smoke", clip=2.0).run_id
        with pytest.raises(UserError, match="clip must be positive"):
            RunConfig(method="clipped", clip=-1.0).resolved()
        assert RunConfig.from_dict(cfg.key()) == cfg.resolved()
    finally:
        METHODS.pop("clipped")
