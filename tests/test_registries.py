"""One registry shape: methods, tasks and quantizer schemes register, look up and refuse alike."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark import methods
from benchmark.errors import UserError
from benchmark.quant import quantizers
from benchmark.registry import Registry
from benchmark.tasks import registry as tasks


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    value: int = 0


def test_register_get_names_and_the_check():
    seen = []
    reg = Registry("widget", item_type=Item, check=lambda item: seen.append(item.name))
    a = reg.register(Item("b", 1))
    reg.register(Item("a", 2))
    assert a is reg.get("b") and reg.names() == ["a", "b"] and seen == ["b", "a"]
    assert "a" in reg and len(reg) == 2 and sorted(reg) == ["a", "b"]
    reg.register(Item("b", 3))  # the same name replaces
    assert reg.get("b").value == 3 and len(reg) == 2
    loose = Item("never-registered")
    assert reg.get(loose) is loose  # an item of the registry's type passes through
    with pytest.raises(UserError, match=r"^unknown widget 'c'; choose one of a, b$"):
        reg.get("c")
    with pytest.raises(UserError, match="register a Item as a widget, not str"):
        reg.register("c")
    for bad in ("", " c", "c "):
        with pytest.raises(UserError, match="a widget needs a non-empty name"):
            reg.register(Item(bad))
    assert reg.names() == ["a", "b"]


def test_a_failed_check_adds_nothing():
    def refuse(item):
        raise UserError(f"no {item.name}")

    reg = Registry("widget", item_type=Item, check=refuse)
    with pytest.raises(UserError, match="no x"):
        reg.register(Item("x"))
    assert reg.names() == []


@pytest.mark.parametrize(
    ("kind", "table", "register", "get", "existing"),
    [
        ("method", methods.METHODS, methods.register_method, methods.get_method, "laq"),
        ("task", tasks.TASKS, tasks.register_task, tasks.get_task, "mnist-mlp"),
        ("quantizer scheme", quantizers._SCHEMES, quantizers.register_scheme, quantizers.get_scheme,
         "lab"),
    ],
)
def test_the_registries_behave_alike(kind, table, register, get, existing):
    item = get(existing)
    assert get(item) is item  # lookup by the object itself
    with pytest.raises(UserError) as info:
        get("no-such-thing")
    assert str(info.value) == f"unknown {kind} 'no-such-thing'; choose one of {', '.join(sorted(table))}"
    with pytest.raises(UserError, match=f"a {kind} needs a non-empty name"):
        register(dataclasses.replace(item, name=" spaced"))
    with pytest.raises(UserError, match=f"as a {kind}, not str"):
        register("laq")
    copy = dataclasses.replace(item, name="copy-of-it")
    try:
        assert register(copy) is copy and get("copy-of-it") is copy
    finally:
        table.pop("copy-of-it", None)
