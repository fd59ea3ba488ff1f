"""The reward spec of a stage's `verifiers` section, with configuration errors reported as config errors.

Verifiers that need torch live on the reasoner side and register themselves here, before the spec is built:
`reward_model` (`reasoner/rm/verifier.py`, a trained reward model's score).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reasoner.config import ConfigError
from reasoner_verifiers import RewardSpec


def reward_spec_for(config: Mapping[str, Mapping[str, Any] | None], where: str) -> RewardSpec:
    """`RewardSpec.from_config(config)`; an unknown verifier name or option is one `ConfigError` naming `where`
    (the verifiers package raises plain ValueErrors: it knows nothing of reasoner's config files)."""
    from reasoner.rm.verifier import register

    register()
    try:
        return RewardSpec.from_config(config)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {' '.join(str(e).split())}") from None
