"""Dataset loading with row-level errors, prompt templates, and the built-in arithmetic task."""
from __future__ import annotations

import json

import pytest

from reasoner.data import DataConfig, DatasetError, PromptConfig, build_prompts, load_examples
from reasoner.data.tasks import arithmetic


def test_jsonl_rows_keep_fields_and_map_names(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "gold": 2, "extra": "x"}) + "\n\n" + json.dumps({"q": "2+2?", "gold": 4}))
    rows = load_examples(DataConfig(source=str(path), prompt_field="q", answer_field="gold"))
    assert [r["problem"] for r in rows] == ["1+1?", "2+2?"]
    assert rows[0]["answer"] == "2" and rows[0]["extra"] == "x" and rows[0]["id"] == "line 1"


def test_malformed_json_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(DatasetError, match=r"d.jsonl, line 2: invalid JSON"):
        load_examples(DataConfig(source=str(path)))


def test_missing_field_names_file_line_and_key(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl, line 2: missing required field 'answer'"):
        load_examples(DataConfig(source=str(path)))


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"problem": "a", "answer": "1"}\n{"problem": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl, line 2: not UTF-8 text"):
        load_examples(DataConfig(source=str(path)))
    whole = tmp_path / "d.json"
    whole.write_bytes(b'[{"problem": "a",\n "answer": "\xff"}]')
    with pytest.raises(DatasetError, match=r"d.json, line 2: not UTF-8 text"):
        load_examples(DataConfig(source=str(whole)))


def test_save_to_disk_folders_load_as_datasets_do(tmp_path):
    import datasets

    rows = {"problem": ["1+1?", "2+2?"], "answer": ["2", "4"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    assert [r["answer"] for r in load_examples(DataConfig(source=str(tmp_path / "one")))] == ["2", "4"]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "test": datasets.Dataset.from_dict({"problem": ["3+3?"], "answer": ["6"]})}
                         ).save_to_disk(str(tmp_path / "dict"))
    got = load_examples(DataConfig(source=str(tmp_path / "dict"), split="test"))
    assert [r["problem"] for r in got] == ["3+3?"]
    with pytest.raises(DatasetError, match="no split 'validation' \\(splits: train, test\\); set data.split"):
        load_examples(DataConfig(source=str(tmp_path / "dict"), split="validation"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="plain: a folder, but not one written by datasets' save_to_disk"):
        load_examples(DataConfig(source=str(tmp_path / "plain")))


def test_an_offline_hub_dataset_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match="hf:openai/gsm8k:main .*the hub is offline") as info:
        load_examples(DataConfig(source="hf:openai/gsm8k:main"))
    assert "\n" not in str(info.value)


def test_unknown_source_lists_builtin_tasks():
    with pytest.raises(DatasetError, match="arithmetic"):
        load_examples(DataConfig(source="no/such/file.jsonl"))


def test_arithmetic_splits_are_disjoint_and_solutions_are_right():
    train = arithmetic(3000, split="train")
    test = arithmetic(300, split="test")
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    for row in train[:200]:
        expr = row["problem"].removeprefix("What is ").removesuffix("?")
        assert str(eval(expr)) == row["answer"]  # noqa: S307 (our own generated arithmetic)
        assert row["response"].endswith(f"<answer>{row['answer']}</answer>")
    assert arithmetic(50, seed=1) != arithmetic(50, seed=2)
    assert arithmetic(50, seed=1) == arithmetic(50, seed=1)


def test_templates_render_chat_r1_and_raw(tokenizer):
    rows = [{"id": "a", "problem": "What is 2 + 2?", "answer": "4"}]
    chat = build_prompts(tokenizer, rows, PromptConfig(template="chat"))[0]
    assert chat.text.endswith("<|im_start|>assistant\n") and "What is 2 + 2?" in chat.text
    assert tokenizer.decode(chat.token_ids) == chat.text
    r1 = build_prompts(tokenizer, rows, PromptConfig(template="r1"))[0]
    assert r1.text.startswith("A conversation between User and Assistant") and r1.text.endswith("Assistant:")
    assert build_prompts(tokenizer, rows, PromptConfig(template="raw"))[0].text == "What is 2 + 2?"
    with pytest.raises(ValueError, match="valid templates: chat, r1, raw"):
        PromptConfig(template="alpaca")
    with pytest.raises(DatasetError, match="'a' has .* tokens, more than prompt.max_prompt_tokens=5"):
        build_prompts(tokenizer, rows, PromptConfig(template="r1", max_prompt_tokens=5))
    system = PromptConfig(system_prompt="Be brief.", instruction=" Think.")
    text = build_prompts(tokenizer, rows, system)[0].text
    assert "Be brief." in text and "What is 2 + 2? Think." in text


def test_a_conversational_prompt_renders_as_the_chat_template_would(tokenizer, tmp_path):
    messages = [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "What is 2 + 2?"}]
    path = tmp_path / "conv.jsonl"
    path.write_text(json.dumps({"prompt": messages, "answer": "4"}) + "\n")
    (ex,) = load_examples(DataConfig(source=str(path), prompt_field="prompt"))
    assert ex["problem"] == "What is 2 + 2?" and ex["prompt_messages"] == messages
    (p,) = build_prompts(tokenizer, [ex])
    assert p.text == tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "[{" not in p.text  # not the string of a Python list
    with_instruction = build_prompts(tokenizer, [ex], PromptConfig(instruction=" Box it.", system_prompt="Ignored."))
    assert "What is 2 + 2? Box it." in with_instruction[0].text and "Ignored." not in with_instruction[0].text
    with pytest.raises(ValueError, match="needs prompt.template=chat"):
        build_prompts(tokenizer, [ex], PromptConfig(template="r1"))
    path.write_text(json.dumps({"prompt": [{"content": "no role"}], "answer": "4"}) + "\n")
    with pytest.raises(DatasetError, match="conv.jsonl, line 1: field 'prompt' must be text or a list of chat"):
        load_examples(DataConfig(source=str(path), prompt_field="prompt"))
