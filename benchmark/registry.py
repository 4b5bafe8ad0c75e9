"""One registry shape for every extension point (methods, tasks, quantizer schemes).

A ``Registry`` is a view over a plain dict ``name -> item`` (the dict stays the module's public
table, e.g. ``METHODS``): ``register(item)`` checks the item (its type, a non-empty name without
surrounding spaces, and the registry's own check) and adds it, replacing one of the same name;
``get(name)`` returns it, or raises UserError naming the valid choices; an item of the
registry's type passes through ``get`` unchanged, so a caller may hand over an object that was
never registered; ``names()`` lists the names, sorted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items keyed by their ``name`` attribute, in the dict ``items``."""

    def __init__(self, kind: str, items: dict[str, T] | None = None, *,
                 item_type: type | None = None, check: Callable[[T], None] | None = None) -> None:
        self.kind = kind
        self.items: dict[str, T] = {} if items is None else items
        self.item_type = item_type
        self.check = check

    def register(self, item: T) -> T:
        """Check ``item`` and add it (replacing one of the same name); returns it."""
        if self.item_type is not None and not isinstance(item, self.item_type):
            raise UserError(f"register a {self.item_type.__name__} as a {self.kind}, "
                            f"not {type(item).__name__}")
        name: Any = getattr(item, "name", None)
        if not isinstance(name, str) or not name or name != name.strip():
            raise UserError(f"a {self.kind} needs a non-empty name without surrounding spaces, "
                            f"not {name!r}")
        if self.check is not None:
            self.check(item)
        self.items[name] = item
        return item

    def get(self, name: str | T) -> T:
        """The item of that name (an item of the registry's type passes through); UserError
        naming the choices otherwise."""
        if self.item_type is not None and isinstance(name, self.item_type):
            return name
        try:
            return self.items[name]  # type: ignore[index]
        except (KeyError, TypeError):
            raise UserError(f"unknown {self.kind} {name!r}; choose one of "
                            f"{', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.items)

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
