"""A tiny name -> function registry, as verl's `core_algos.py` does for its algorithm families.

Each family (advantage estimators, KL estimators, loss aggregations, policy losses) owns one `Registry`; a
variant is added by decorating a function with `@REGISTRY.register("name")`, and callers pick it by name from
configuration. Looking up an unknown name raises `UnknownNameError` (a `KeyError` *and* a `ValueError`, so either
`except` catches it) whose message lists the valid names.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; the message lists the valid names."""

    def __str__(self) -> str:
        # KeyError's str() wraps the message in quotes; show it plainly.
        return str(self.args[0]) if self.args else ""


class Registry(Generic[F]):
    """Functions of one algorithm family, keyed by name.

    >>> ADV = Registry("advantage estimator")
    >>> @ADV.register("zero")
    ... def zero(rewards): ...
    >>> ADV.get("zero") is zero
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind  # used in error messages, e.g. "advantage estimator"
        self._fns: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering `fn` under `name`; registering a different function twice is an error."""

        def decorator(fn: F) -> F:
            existing = self._fns.get(name)
            if existing is not None and existing is not fn:
                raise ValueError(f"{self.kind} {name!r} is already registered (to {existing.__qualname__})")
            self._fns[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> F:
        try:
            return self._fns[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._fns
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._fns)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
