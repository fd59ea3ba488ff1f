"""Scalar-head models on a causal LM body: the PPO critic (a value per token) and the reward model (a score per
sequence), both plain `from_pretrained` checkpoints.

- Value model: `AutoModelForTokenClassification` with one label: the LM's body (from the policy's checkpoint or
  any causal LM with the same architecture; its output head is dropped) and a fresh linear head, `[B, L, 1]`.
  As in verl's FSDP critic and TRL's PPO value model. A value head on the policy's own body (shared weights)
  is not offered: the critic has its own body, optimizer and learning rate.
- Reward model: `AutoModelForSequenceClassification` with one label; `sequence_scores` reads the head at the
  last attended token of each row (it does not rely on the pad-token search of the model's own forward, so
  left or right padding and a pad token equal to EOS all work). The saved model's own forward pools the same
  way whenever the pad token is not the last real token.

Classifier dropout is turned off: the critic's targets are regressions, and dropout would make the values the
advantages are computed from differ from the ones the critic is trained on.
"""
from __future__ import annotations

import torch

from reasoner.models.loading import ModelConfig, ModelLoadError, check_source, load_model


def load_value_model(cfg: ModelConfig, *, path: str | None = None, trainable: bool = True):
    """A token-value model (`[B, L, 1]` outputs) from `path` (a causal LM or a saved value model)."""
    from transformers import AutoModelForTokenClassification

    return load_model(cfg, path=path, trainable=trainable, auto_class=AutoModelForTokenClassification,
                      config=_head_config(cfg, path or cfg.path, classifier_dropout=0.0))


def load_reward_model(cfg: ModelConfig, *, path: str | None = None, trainable: bool = True):
    """A sequence-scoring model (one scalar per sequence) from `path` (a causal LM or a saved reward model)."""
    from transformers import AutoModelForSequenceClassification

    return load_model(cfg, path=path, trainable=trainable, auto_class=AutoModelForSequenceClassification,
                      config=_head_config(cfg, path or cfg.path))


def _head_config(cfg: ModelConfig, source: str, **settings):
    """The checkpoint's config with one output label (and `settings`), or the load error `load_model` gives."""
    from transformers import AutoConfig

    check_source(source)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise ModelLoadError(f"model {source}: could not load its config: {str(e).strip().splitlines()[0]}") from e
    config.num_labels = 1
    for key, value in settings.items():
        setattr(config, key, value)
    return config


def token_values(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """`[B, L]` float32: the value head at every position of `[B, L]` rows."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.logits[..., 0].float()


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`[B]` float32: the score head of a sequence-classification model at each row's last attended token."""
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False).last_hidden_state
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    last = torch.where(attention_mask.bool(), positions, -1).amax(dim=1).clamp(min=0)
    pooled = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]
    return model.score(pooled)[:, 0].float()
