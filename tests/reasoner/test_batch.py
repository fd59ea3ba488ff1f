"""Collation of rollouts into `[left-padded prompt | right-padded response]` rows, and row selection."""
from __future__ import annotations

import torch

from reasoner.rollout import Completion
from reasoner.training.batch import Rollouts, collate

PAD = 0


def _rollouts() -> Rollouts:
    comps = [Completion([5, 6, 7], [-0.1, -0.2, -0.3], "stop"), Completion([8], [-0.4], "length"),
             Completion([9, 10], [-0.5, -0.6], "length"), Completion([11], [-0.7], "stop")]
    return Rollouts(prompt_ids=[[1, 2], [1, 2], [3, 4, 4], [3, 4, 4]], completions=comps, texts=[""] * 4,
                    examples=[{}] * 4, group_size=2)


def test_collate_layout_positions_and_masks():
    b = collate(_rollouts(), torch.tensor([1.0, -1.0, 0.5, -0.5]), PAD)
    assert b.input_ids.tolist() == [[0, 1, 2, 5, 6, 7], [0, 1, 2, 8, 0, 0], [3, 4, 4, 9, 10, 0], [3, 4, 4, 11, 0, 0]]
    assert b.attention_mask.tolist() == [[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0],
                                         [1, 1, 1, 1, 0, 0]]
    assert b.position_ids[0].tolist()[1:] == [0, 1, 2, 3, 4]  # positions count from the first real token
    assert b.position_ids[2].tolist()[:5] == [0, 1, 2, 3, 4]
    assert b.response_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert b.response_ids.tolist()[0] == [5, 6, 7]
    assert torch.allclose(b.engine_logprobs[2], torch.tensor([-0.5, -0.6, 0.0]))


def test_mask_truncated_removes_loss_on_length_stopped_rows():
    b = collate(_rollouts(), torch.zeros(4), PAD, mask_truncated=True)
    assert b.response_mask.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 0, 0]]


def test_select_trims_columns_that_are_padding_in_every_selected_row():
    b = collate(_rollouts(), torch.tensor([1.0, -1.0, 0.5, -0.5]), PAD)
    part = b.select([1, 3])  # prompt widths 2 and 3, responses 1 token each
    assert part.input_ids.tolist() == [[0, 1, 2, 8], [3, 4, 4, 11]]
    assert part.response_mask.tolist() == [[1], [1]] and part.advantages.tolist() == [-1.0, -0.5]
    only_short = b.select([1])
    assert only_short.input_ids.tolist() == [[1, 2, 8]] and only_short.position_ids.tolist() == [[0, 1, 2]]
