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
