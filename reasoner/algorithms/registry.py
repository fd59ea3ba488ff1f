"""A tiny name -> function registry, as verl's `core_algos.py` does for its algorithm families.

Each family (advantage estimators, KL estimators, loss aggregations, policy losses) owns one `Registry`; a
variant is added by decorating a function with `@REGISTRY.register("name")`, and callers pick it by name from
configuration. Looking up an unknown name raises `UnknownNameError` (a `KeyError` *and* a `ValueError`, so either
`except` catches it) whose message lists the valid names.

Hyperparameters: a registered function's keyword-only parameters are its options, and they are named like the
configuration fields that set them (`clip_low`, `advantage_eps`). `pick_options(name, config_values)` selects
the ones that function takes, so a new variant with a new hyperparameter needs its function and one config
field, and no caller changes.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

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

    def option_names(self, name: str) -> tuple[str, ...]:
        """The keyword-only parameters of the function registered as `name` (its hyperparameters)."""
        params = inspect.signature(self.get(name)).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)

    def pick_options(self, name: str, available: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `available` (e.g. every field of a config section) that `name`'s function takes."""
        return {key: available[key] for key in self.option_names(name) if key in available}

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
