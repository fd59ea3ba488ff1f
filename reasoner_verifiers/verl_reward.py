"""Entry file for verl's `custom_reward_function.path` (verl loads it by file path, outside any package, so
it uses absolute imports): `name: compute_score` per sample, or `compute_score_batch` for verl's batch reward
manager. The spec comes from `$VERIFIERS_REWARD_SPEC`; see `reasoner_verifiers.adapters`."""
from reasoner_verifiers.adapters import compute_score, compute_score_batch

__all__ = ["compute_score", "compute_score_batch"]
