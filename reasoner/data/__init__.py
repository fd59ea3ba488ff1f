"""Prompt datasets: loading (JSONL / JSON / parquet / `datasets` hub names / built-in tasks), templates, sampling."""
from reasoner.data.datasets import DataConfig, DatasetError, load_examples
from reasoner.data.templates import Prompt, PromptConfig, build_prompts, render_prompt

__all__ = ["DataConfig", "DatasetError", "Prompt", "PromptConfig", "build_prompts", "load_examples", "render_prompt"]
