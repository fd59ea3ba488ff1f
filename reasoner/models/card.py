"""A model card (`README.md` with the Hub's YAML metadata) beside every model a run saves, and `push`.

The card states what produced the weights — the stage, the base model, the data, the algorithm and the numbers
the run measured (first vs last logged steps) — so that a model on the Hub says how it was made. `push_model`
uploads a saved model folder (card included) with `huggingface_hub`; failures are one-line errors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasoner.errors import ReasonerError

STAGE_TAGS = {"grpo": ["reinforcement-learning", "grpo", "rlvr"], "sft": ["sft"]}


@dataclass
class ModelCard:
    stage: str                                   # grpo | sft | ...
    base_model: str | None                       # hub id or path the run started from
    summary: dict[str, Any] = field(default_factory=dict)     # settings worth stating (data, steps, algorithm, ...)
    metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # metric -> (start, end)

    def render(self) -> str:
        meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation",
                                "tags": ["reasoner", *STAGE_TAGS.get(self.stage, [self.stage])]}
        if self.base_model and not _is_local(self.base_model):
            meta["base_model"] = self.base_model  # the Hub links it; a local path would be a broken link
        lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
                 f"# {self.stage.upper()} model trained with reasoner", "",
                 f"Trained from `{self.base_model or 'a randomly initialised model'}` by `reasoner {_command(self)}`.",
                 ""]
        if self.summary:
            lines += ["| setting | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in self.summary.items()]
            lines.append("")
        if self.metrics:
            lines += ["Training metrics (means of the first and last logged steps):", "",
                      "| metric | start | end |", "|---|---|---|"]
            lines += [f"| {k} | {_fmt(a)} | {_fmt(b)} |" for k, (a, b) in self.metrics.items()]
            lines.append("")
        lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO_ID")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO_ID")', "```", ""]
        return "\n".join(lines)


def write_model_card(model_dir: str | Path, card: ModelCard) -> Path:
    path = Path(model_dir) / "README.md"
    path.write_text(card.render())
    return path


def card_metrics(records: list[dict[str, Any]], keys: list[str], width: int = 5) -> dict[str, tuple[Any, Any]]:
    out = {}
    for key in keys:
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            out[key] = (sum(values[:width]) / len(values[:width]), sum(values[-width:]) / len(values[-width:]))
    return out


def push_model(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
               message: str | None = None) -> str:
    """Uploads a saved model folder (or a run folder's `model/`) to the Hub repo `repo_id`; returns its URL."""
    folder = Path(folder)
    if (folder / "model" / "config.json").exists():
        folder = folder / "model"
    if not (folder / "config.json").exists():
        raise ReasonerError(f"{folder}: not a saved model (no config.json); pass a model folder or a run folder "
                            f"with model/ in it")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no"):
        raise ReasonerError("HF_HUB_OFFLINE is set: the Hub cannot be reached; unset it to push")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                          commit_message=message or f"Upload {folder.name} from reasoner")
    except LocalTokenNotFoundError:
        raise ReasonerError("no Hugging Face token: run `hf auth login` or set HF_TOKEN") from None
    except (HfHubHTTPError, OSError) as e:
        raise ReasonerError(f"push to {repo_id} failed: {' '.join(str(e).split())}") from None
    return str(url)


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).exists()


def _command(card: ModelCard) -> str:
    return {"grpo": "train"}.get(card.stage, card.stage)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
