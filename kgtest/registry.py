"""Name -> definition registries (samplers, unlearning methods, probes).

A registry lives next to the definitions it collects (``@SAMPLERS.register(...)`` above
the function); configs refer to names; an unknown name is one line listing the known ones,
with a did-you-mean. Each kind of registry subclasses :class:`Registry` with its own
``register`` decorator (what it records differs); lookup and listing are shared.

Examples
--------
>>> reg = Registry("colour")
>>> reg.add("red", 1)
>>> reg.get("red"), reg.names(), "red" in reg
(1, ['red'], True)
>>> reg.get("rde")
Traceback (most recent call last):
...
kgtest.errors.InputError: unknown colour 'rde' (did you mean 'red'? known: red)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from kgtest.config import did_you_mean
from kgtest.errors import InputError

__all__ = ["Registry", "first_doc_line"]

T = TypeVar("T")


def first_doc_line(fn) -> str:
    """The first line of a function's docstring ('' if none): a registry entry's summary."""
    return (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""


class Registry(Generic[T]):
    """An ordered name -> item table with helpful lookup errors."""

    def __init__(self, what: str):
        self.what = what  # "sampler", "unlearning method", ... (used in messages)
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        """Register ``item`` under ``name`` (a name may be registered once)."""
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str, *, where: str = "") -> T:
        """The item called ``name``; :class:`InputError` listing the known ones if none."""
        if name not in self._items:
            hint = did_you_mean(name, self._items, cutoff=0.5)
            raise InputError(f"{where}unknown {self.what} {name!r} "
                             f"({hint}known: {', '.join(self.names())})")
        return self._items[name]

    def names(self) -> list[str]:
        """The names, sorted (how messages and ``iter`` list them)."""
        return sorted(self._items)

    def registered(self) -> list[str]:
        """The names in the order they were registered (definition order in the code)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
