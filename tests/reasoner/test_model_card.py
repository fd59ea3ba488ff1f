"""Model cards beside saved models, and `reasoner push` (the Hub replaced by a recorder: no network here)."""
import pytest
import yaml

from reasoner.cli import main
from reasoner.models.card import ModelCard, card_metrics, push_model, write_model_card


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_states_base_model_settings_and_measured_metrics(tmp_path):
    records = [{"step": s, "pass@1": 0.1 * s} for s in range(1, 11)]
    card = ModelCard(stage="grpo", base_model="Qwen/Qwen2.5-1.5B", summary={"data": "gsm8k", "steps": 10},
                     metrics=card_metrics(records, ["pass@1", "absent"]))
    assert card.metrics == {"pass@1": (pytest.approx(0.3), pytest.approx(0.8))}
    text = write_model_card(tmp_path, card).read_text()
    meta = _front_matter(text)
    assert meta["base_model"] == "Qwen/Qwen2.5-1.5B" and meta["library_name"] == "transformers"
    assert {"reasoner", "grpo"} <= set(meta["tags"])
    assert "by `reasoner train`" in text and "| data | gsm8k |" in text and "| pass@1 | 0.3 | 0.8 |" in text


def test_a_local_base_model_is_not_claimed_as_a_hub_link(tmp_path):
    meta = _front_matter(ModelCard(stage="sft", base_model=str(tmp_path)).render())
    assert "base_model" not in meta


def _model_folder(tmp_path):
    folder = tmp_path / "run" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


class _Hub:
    calls: list = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], kw))


def test_push_uploads_the_run_folders_model(tmp_path, monkeypatch, capsys):
    folder = _model_folder(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.HfApi", _Hub)
    _Hub.calls = []
    assert main(["push", str(tmp_path / "run"), "me/model", "--private", "--revision", "v1"]) == 0
    assert [c[0] for c in _Hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert _Hub.calls[0][2]["private"] is True
    assert _Hub.calls[2][2]["folder_path"] == str(folder) and _Hub.calls[2][2]["revision"] == "v1"
    assert "https://huggingface.co/me/model" in capsys.readouterr().out


def test_push_errors_are_one_line(tmp_path, monkeypatch, capsys):
    assert main(["push", str(tmp_path), "me/model"]) == 2
    assert "not a saved model (no config.json)" in capsys.readouterr().err
    _model_folder(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(tmp_path / "run"), "me/model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE is set" in err
    monkeypatch.delenv("HF_HUB_OFFLINE")

    from huggingface_hub.errors import LocalTokenNotFoundError

    class NoToken(_Hub):
        def create_repo(self, repo_id, **kw):
            raise LocalTokenNotFoundError("Token is required")
    monkeypatch.setattr("huggingface_hub.HfApi", NoToken)
    with pytest.raises(Exception, match="no Hugging Face token"):
        push_model(tmp_path / "run", "me/model")
