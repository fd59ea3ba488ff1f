"""Verifiers by name: `get_verifier("math", mode="strict")`. Unknown names and options fail with one error."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .types import Verifier

# name -> factory(options mapping) -> Verifier; factories validate their own options (types.parse_options)
_FACTORIES: dict[str, Callable[[Mapping[str, Any]], Verifier]] = {}


def register(name: str, factory: Callable[[Mapping[str, Any]], Verifier]) -> None:
    if name in _FACTORIES:
        raise ValueError(f"verifier {name!r} is already registered")
    _FACTORIES[name] = factory


def available() -> list[str]:
    _load_builtins()
    return sorted(_FACTORIES)


def get_verifier(name: str, **options: Any) -> Verifier:
    _load_builtins()
    if name not in _FACTORIES:
        raise ValueError(f"unknown verifier {name!r}; valid names: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](options)


_loaded = False


def _load_builtins() -> None:
    """Register the built-in verifiers on first use (keeps `import reasoner_verifiers.registry` cheap and
    cycle-free)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import code, language
    from . import format_reward as format
    from .math.verifier import MathOptions, MathVerifier
    from .types import parse_options

    register("math", lambda o: MathVerifier(parse_options(MathOptions, o, "math")))
    register("format", lambda o: format.FormatVerifier(parse_options(format.FormatOptions, o, "format")))
    register("format_partial", lambda o: format.FormatVerifier(
        parse_options(format.FormatOptions, {"partial": True, **o}, "format_partial")))
    register("language", lambda o: language.LanguageVerifier(
        parse_options(language.LanguageOptions, o, "language")))
    register("code", lambda o: code.CodeVerifier(parse_options(code.CodeOptions, o, "code")))
