"""`reasoner merge`: the merged checkpoint loads with from_pretrained and is the weighted average; mismatches fail."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasoner.cli import main
from reasoner.data.tasks import arithmetic
from reasoner.models import TinyModelSpec, build_tiny_model
from reasoner.models.merge import MergeError, merge_models


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tiny_model_dir):
    """The session's tiny model and a second one of the same architecture with other weights."""
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("other") / "model"
    other.save_pretrained(path)
    return str(tiny_model_dir), str(path)


def test_merged_model_is_the_weighted_average(tmp_path, two_models):
    a, b = two_models
    assert main(["merge", a, b, "--weights", "0.3", "0.7", "--out", str(tmp_path / "c")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "c")
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    pa, pb = dict(ma.named_parameters()), dict(mb.named_parameters())
    changed = 0
    for name, p in merged.named_parameters():
        expected = 0.3 * pa[name].double() + 0.7 * pb[name].double()
        torch.testing.assert_close(p.double(), expected, atol=1e-6, rtol=0)
        changed += not torch.equal(p, pa[name])
    assert changed > 0
    assert (tmp_path / "c" / "tokenizer_config.json").is_file()
    # generation works from the merged folder as from any checkpoint
    ids = torch.tensor([[1, 2, 3]])
    assert merged.generate(ids, max_new_tokens=2, do_sample=False).shape == (1, 5)


def test_equal_weights_by_default_and_mismatches_are_refused(tmp_path, two_models, capsys):
    a, b = two_models
    assert main(["merge", a, b, "--out", str(tmp_path / "avg")]) == 0
    assert "0.5 x" in capsys.readouterr().out
    with pytest.raises(MergeError, match="2 checkpoints but 3 weights"):
        merge_models([a, b], [0.2, 0.3, 0.5], tmp_path / "x")
    rows = arithmetic(200, split="train")
    small = build_tiny_model(tmp_path / "small", [f"{r['problem']} {r['response']}" for r in rows],
                             TinyModelSpec(vocab_size=384, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                           head_dim=16, intermediate_size=64, max_position_embeddings=512))
    with pytest.raises(MergeError, match="parameter '.*' is"):
        merge_models([a, str(small)], [0.5, 0.5], tmp_path / "y")
    assert main(["merge", a, str(small), "--out", str(tmp_path / "z")]) == 2
    assert "reasoner merge: error:" in capsys.readouterr().err
