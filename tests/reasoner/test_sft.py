"""SFT: loss masks cover response tokens only, packing is exact, accumulation-invariant loss, LoRA, learning."""
from __future__ import annotations

import json

import pytest
import torch

from reasoner.config import load_config
from reasoner.data.datasets import DataConfig, DatasetError
from reasoner.data.tasks import arithmetic
from reasoner.data.templates import render_prompt
from reasoner.models import ModelConfig, load_model
from reasoner.sft import SFTConfig, load_sft_rows, pack_examples, sft, tokenize_examples
from reasoner.sft.trainer import collate_sft, sft_loss, train_batch


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    torch.manual_seed(0)
    return load_model(ModelConfig(path=str(tiny_model_dir)))


def test_prompt_response_mask_covers_exactly_the_response_and_eos(tokenizer):
    row = {"problem": "What is 12 + 30?", "response": "<think>\n2+0=2\n</think>\n<answer>42</answer>"}
    (ex,) = tokenize_examples(tokenizer, [row])
    prompt_ids = tokenizer(render_prompt(tokenizer, row["problem"]), add_special_tokens=False)["input_ids"]
    assert ex.input_ids[:len(prompt_ids)] == prompt_ids                  # generation starts from these tokens
    assert ex.loss_mask == [0] * len(prompt_ids) + [1] * (len(ex.input_ids) - len(prompt_ids))
    targets = [t for t, m in zip(ex.input_ids, ex.loss_mask) if m]
    assert targets[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(targets[:-1]) == row["response"]


def test_chat_mask_covers_assistant_turns_only(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
                {"role": "assistant", "content": "<answer>4</answer>"}, {"role": "user", "content": "And 3 + 3?"},
                {"role": "assistant", "content": "<answer>6</answer>"}]
    (ex,) = tokenize_examples(tokenizer, [{"messages": messages}])
    spans, current = [], []
    for t, m in zip(ex.input_ids, ex.loss_mask):
        if m:
            current.append(t)
        elif current:
            spans.append(current)
            current = []
    spans += [current] if current else []
    # Each assistant turn's content plus its end-of-turn marker; nothing from system or user turns.
    assert [tokenizer.decode(s) for s in spans] == ["<answer>4</answer><|im_end|>\n", "<answer>6</answer><|im_end|>\n"]


def test_collated_labels_ignore_prompt_and_padding(tokenizer):
    rows = arithmetic(3, split="train")
    examples = tokenize_examples(tokenizer, rows)
    t = collate_sft(examples, tokenizer.pad_token_id)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        pad = t["labels"].shape[1] - n
        expected = [tok if m else -100 for tok, m in zip(e.input_ids, e.loss_mask)] + [-100] * pad
        assert t["labels"][i].tolist() == expected
        assert t["attention_mask"][i].tolist() == [1] * n + [0] * pad


def test_loss_is_cross_entropy_on_response_tokens_only(model, tokenizer):
    examples = tokenize_examples(tokenizer, arithmetic(2, split="train"))
    num = sum(sum(e.loss_mask[1:]) for e in examples)
    loss = sft_loss(model, collate_sft(examples, tokenizer.pad_token_id), num, "cpu")
    manual = 0.0
    with torch.no_grad():
        for e in examples:
            logp = torch.log_softmax(model(input_ids=torch.tensor([e.input_ids])).logits[0].float(), -1)
            manual -= sum(float(logp[i - 1, e.input_ids[i]]) for i in range(1, len(e.input_ids)) if e.loss_mask[i])
    assert float(loss.detach()) == pytest.approx(manual / num, rel=1e-5)
    # Changing a prompt token's label cannot change the loss; changing a response token's label does.
    t = collate_sft(examples, tokenizer.pad_token_id)
    first_target = examples[0].loss_mask.index(1)
    relabelled = dict(t, labels=t["labels"].clone())
    relabelled["labels"][0, 1] = -100             # already ignored: a prompt position
    relabelled_loss = float(sft_loss(model, relabelled, num, "cpu").detach())
    assert relabelled_loss == pytest.approx(float(loss.detach()), rel=1e-6)
    relabelled["labels"][0, first_target + 1] = -100
    assert float(sft_loss(model, relabelled, num, "cpu").detach()) != pytest.approx(float(loss.detach()), rel=1e-6)


def test_packing_keeps_every_token_and_separates_examples(model, tokenizer):
    examples = tokenize_examples(tokenizer, arithmetic(7, split="train"))
    packed = pack_examples(examples, max_length=300)
    assert len(packed) < len(examples) and all(len(p.input_ids) <= 300 for p in packed)
    assert [t for p in packed for t in p.input_ids] == [t for e in examples for t in e.input_ids]
    starts = [i for p in packed for i, pos in enumerate(p.position_ids) if pos == 0]
    assert len(starts) == len(examples)
    assert all(p.loss_mask[i] == 0 for p in packed for i, pos in enumerate(p.position_ids) if pos == 0)
    num = sum(sum(e.loss_mask[1:]) for e in examples)
    plain = sft_loss(model, collate_sft(examples, tokenizer.pad_token_id), num, "cpu")
    packed_loss = sft_loss(model, collate_sft(packed, tokenizer.pad_token_id), num, "cpu")
    assert float(packed_loss.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    # Without the position ids, packed examples attend to each other and the loss changes: the check can fail.
    leaky = collate_sft(packed, tokenizer.pad_token_id)
    leaky.pop("position_ids")
    assert float(sft_loss(model, leaky, num, "cpu").detach()) != pytest.approx(float(plain.detach()), rel=1e-5)


def test_micro_batches_give_the_same_loss_and_gradient(tiny_model_dir, tokenizer):
    examples = tokenize_examples(tokenizer, arithmetic(6, split="train"))
    grads = []
    for micro in (0, 4):
        m = load_model(ModelConfig(path=str(tiny_model_dir)))
        cfg = load_config(SFTConfig, None, [f"optim.micro_batch_size={micro}"])
        loss, tokens = train_batch(m, examples, tokenizer.pad_token_id, cfg, "cpu")
        grads.append((loss, torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


def test_rows_chat_only_and_errors_name_the_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n"
                    + json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    with pytest.raises(DatasetError, match=r"chat.jsonl, line 2: an SFT row needs 'messages' or 'problem' and "
                                           r"'response' \(fields present: completion, prompt\)"):
        load_sft_rows(DataConfig(source=str(path)))
    rows = load_sft_rows(DataConfig(source=str(path), limit=1))
    assert rows[0]["messages"][1]["content"] == "yo"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "completion": "c", "messages": [{"role": "user", "content": "x"}]}))
    (row,) = load_sft_rows(DataConfig(source=str(pairs), prompt_field="prompt"), response_field="completion",
                           row_format="prompt_response")
    assert row["problem"] == "p"


def _cfg(model_dir, out, *extra):
    return load_config(SFTConfig, None, [f"model.path={model_dir}", f"out_dir={out}", "data.source=arithmetic",
                                         "data.num_examples=16", "batch_size=8", "log.progress=false", "log.every=1",
                                         "optim={lr: 3.0e-3, schedule: constant, max_grad_norm: 1.0}", *extra])


def test_sft_learns_and_saves_a_loadable_model(tmp_path, tiny_model_dir):
    result = sft(_cfg(tiny_model_dir, tmp_path / "sft", "max_steps=12", "batch_size=4"))
    losses = [json.loads(x)["loss"] for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    reloaded = load_model(ModelConfig(path=str(result.final_model)), trainable=False)
    base = load_model(ModelConfig(path=str(tiny_model_dir)), trainable=False)
    assert any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), base.state_dict().values()))
    assert (result.final_model / "tokenizer.json").exists() and (tmp_path / "sft" / "config.yaml").exists()
    # the same run outputs as GRPO: TensorBoard, plots, a report
    assert list((tmp_path / "sft" / "tensorboard").iterdir())
    assert {p.name for p in (tmp_path / "sft" / "plots").iterdir()} == {"loss.png", "grad_norm.png", "lr.png"}
    report = (tmp_path / "sft" / "report.md").read_text()
    assert "| loss |" in report and "![loss](plots/loss.png)" in report
    card = (result.final_model / "README.md").read_text()
    assert "by `reasoner sft`" in card and "| loss |" in card


def test_lora_trains_adapters_only_and_saves_the_merged_model(tmp_path, tiny_model_dir):
    result = sft(_cfg(tiny_model_dir, tmp_path / "lora", "max_steps=3", "lora.enabled=true", "lora.r=4",
                      "lora.target_modules=[q_proj,v_proj]"))
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    base = load_model(ModelConfig(path=str(tiny_model_dir)), trainable=False).state_dict()
    merged = load_model(ModelConfig(path=str(result.final_model)), trainable=False).state_dict()
    assert set(base) == set(merged)                            # a plain checkpoint, no adapter keys
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)


@pytest.mark.parametrize("pack", [False, True])
def test_fused_sft_loss_equals_cross_entropy_in_value_and_gradient(tiny_model_dir, tokenizer, pack):
    from transformers import AutoModelForCausalLM

    from reasoner.models.exact import upcast_norms
    from reasoner.sft.loss import SFTLoss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64, attn_implementation="sdpa")
    upcast_norms(model)
    examples = tokenize_examples(tokenizer, arithmetic(5, split="train"))
    if pack:
        examples = pack_examples(examples, 128)
    tensors = collate_sft(examples, tokenizer.pad_token_id)
    num = float((tensors["labels"][:, 1:] != -100).sum())
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for fused in (False, True):
        loss = SFTLoss(model, fused_head=fused)(tensors, num)
        results.append((loss.detach(), torch.autograd.grad(loss, params)))
    (ref, ref_grads), (ours, grads) = results
    assert float(ours) == pytest.approx(float(ref), abs=1e-9)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0.0)
