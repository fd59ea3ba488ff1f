"""Run the R1 recipe stage by stage, each stage's outputs feeding the next, resumable.

Every stage runs in `<out>/<stage>/` (the `out_dir` of its section is replaced by that) and records itself in
`<out>/<stage>/stage.json`: a fingerprint of its resolved config chained with the fingerprints of the stages
before it, a status (`started` / `done`) and its outputs. On a re-run:
- a `done` stage with the same fingerprint is skipped and its recorded outputs are used;
- a `started` stage with the same fingerprint was interrupted: it runs again in its folder, where GRPO resumes
  from its newest checkpoint and sampling stages keep their finished problems (SFT simply starts over);
- a stage whose fingerprint changed (its settings, or anything upstream) has its folder removed and runs afresh,
  and so, through the chain, does every stage after it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reasoner.config import ConfigError, save_config, to_dict
from reasoner.pipeline.config import MODEL_STAGES, STAGES, PipelineConfig

STAGE_FILE = "stage.json"


@dataclass
class PipelineResult:
    out: Path
    outputs: dict[str, dict[str, Any]]    # stage -> its recorded outputs
    ran: list[str]                        # stages run (not skipped) in this invocation


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> PipelineResult:
    _check(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    outputs: dict[str, dict[str, Any]] = {}
    ran: list[str] = []
    chain = ""
    for i, stage in enumerate(cfg.stages, 1):
        stage_cfg = WIRING[stage](cfg, outputs, out / stage)
        if cfg.seed is not None:
            set_seeds(stage_cfg, cfg.seed)
        fingerprint = hashlib.sha256((chain + json.dumps(to_dict(stage_cfg), sort_keys=True)).encode()).hexdigest()
        record = _read_record(out / stage)
        if record and record["fingerprint"] == fingerprint and record["status"] == "done":
            log(f"[pipeline] {i}/{len(cfg.stages)} {stage}: done earlier, skipped")
            outputs[stage] = record["outputs"]
        else:
            if record and record["fingerprint"] != fingerprint:
                log(f"[pipeline] {stage}: settings or inputs changed since the last run; starting it afresh")
                shutil.rmtree(out / stage)
            log(f"[pipeline] {i}/{len(cfg.stages)} {stage}")
            _write_record(out / stage, fingerprint, "started", {})
            outputs[stage] = RUNNERS[stage](stage_cfg, out / stage)
            _write_record(out / stage, fingerprint, "done", outputs[stage])
            ran.append(stage)
        chain = fingerprint
    (out / "summary.json").write_text(json.dumps(outputs, indent=2))
    return PipelineResult(out=out, outputs=outputs, ran=ran)


# ---------------------------------------------------------------------------------------------------- wiring
# Each returns the stage's own config with inputs filled from earlier outputs and out_dir set to its folder.


def _base(cfg: PipelineConfig, outputs: dict) -> str:
    path = cfg.base_model or outputs.get("init", {}).get("model") or _recorded(cfg, "init", "model")
    if not path:
        raise ConfigError("no base model: set 'base_model' or include the 'init' stage")
    return path


def _latest_policy(cfg: PipelineConfig, outputs: dict, before: str) -> str:
    """The newest policy produced before stage `before` (grpo, else cold_start, else the base model)."""
    order = [s for s in ("grpo", "cold_start") if STAGES.index(s) < STAGES.index(before)]
    for stage in order:
        path = outputs.get(stage, {}).get("model") or _recorded(cfg, stage, "model")
        if path:
            return path
    return _base(cfg, outputs)


def _wire_init(cfg, outputs, folder):
    return copy.deepcopy(cfg.init)


def _wire_cold_start(cfg, outputs, folder):
    c = copy.deepcopy(cfg.cold_start)
    c.model.path = c.model.path or _base(cfg, outputs)
    c.out_dir = str(folder)
    return c


def _wire_grpo(cfg, outputs, folder):
    g = copy.deepcopy(cfg.grpo)
    g.model.path = g.model.path or _latest_policy(cfg, outputs, "grpo")
    g.out_dir = str(folder)
    return g


def _wire_distill(cfg, outputs, folder):
    d = copy.deepcopy(cfg.distill)
    d.teacher.path = d.teacher.path or _latest_policy(cfg, outputs, "distill")
    d.out_dir = str(folder)
    return d


def _wire_student(cfg, outputs, folder):
    s = copy.deepcopy(cfg.student)
    s.model.path = s.model.path or cfg.student_model or _base(cfg, outputs)
    data = outputs.get("distill", {}).get("data") or _recorded(cfg, "distill", "data")
    if data:  # the distilled rows are the student's data whenever there are any
        s.data.source = data
    s.out_dir = str(folder)
    return s


def _wire_eval(cfg, outputs, folder):
    models = {}
    for name in cfg.eval_models:
        path = _base(cfg, outputs) if name == "base" else \
            outputs.get(name, {}).get("model") or _recorded(cfg, name, "model")
        if not path:
            raise ConfigError(f"eval_models names '{name}', which has produced no model (run that stage first)")
        models[name] = path
    return {"models": models, "eval": to_dict(cfg.eval)}


WIRING = {"init": _wire_init, "cold_start": _wire_cold_start, "grpo": _wire_grpo, "distill": _wire_distill,
          "student": _wire_student, "eval": _wire_eval}


# --------------------------------------------------------------------------------------------------- runners


def _run_init(init, folder: Path) -> dict:
    from reasoner.data.tasks import TASKS
    from reasoner.models import build_tiny_model

    if init.task not in TASKS:
        raise ConfigError(f"init.task '{init.task}' is not a built-in task ({', '.join(TASKS)})")
    rows = TASKS[init.task](init.corpus_examples, split="train", seed=init.seed)
    corpus = [f"{r['problem']} {r.get('response', '')}" for r in rows]
    return {"model": str(build_tiny_model(folder / "model", corpus, init.spec))}


def _run_sft(sft_cfg, folder: Path) -> dict:
    from reasoner.sft import sft
    result = sft(sft_cfg)
    return {"model": str(result.final_model), "final_loss": result.final_loss, "steps": result.steps}


def _run_grpo(train_cfg, folder: Path) -> dict:
    from reasoner.training import train
    result = train(train_cfg)
    return {"model": str(result.final_model), "steps": result.steps}


def _run_distill(distill_cfg, folder: Path) -> dict:
    from reasoner.distill import distill, format_stats
    result = distill(distill_cfg)
    print(format_stats(result.stats))
    if result.rows == 0:
        raise ConfigError(f"distillation kept no rows ({result.output.with_suffix('.stats.json')}): the teacher "
                          f"solved nothing that passed the filter; more samples, more prompts, or accept=all")
    return {"data": str(result.output), "rows": result.rows, "acceptance_rate": result.stats["acceptance_rate"]}


def _run_eval(wired: dict, folder: Path) -> dict:
    from reasoner.config import from_dict
    from reasoner.evaluation import EvalConfig, run_eval
    from reasoner.evaluation.report import markdown_table

    results = {}
    for name, path in wired["models"].items():
        cfg = from_dict(EvalConfig, wired["eval"])
        cfg.model.path, cfg.out_dir = path, str(folder / name)
        result = run_eval(cfg)
        print(f"[pipeline] eval of {name} ({path}):\n{markdown_table(result.metrics)}")
        results[name] = {"results": str(result.results_path),
                         "pass@1": {m.name: m.pass_at[1].mean for m in result.metrics if 1 in m.pass_at}}
    return results


RUNNERS = {"init": _run_init, "cold_start": _run_sft, "grpo": _run_grpo, "distill": _run_distill,
           "student": _run_sft, "eval": _run_eval}


# ----------------------------------------------------------------------------------------------------- seeds


def set_seeds(node: Any, seed: int) -> None:
    """Set every integer field or key named `seed` in a stage's config tree (dataclasses, dicts, lists) to `seed`."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name == "seed" and isinstance(value, int):
                setattr(node, f.name, seed)
            else:
                set_seeds(value, seed)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "seed" and isinstance(value, int):
                node[key] = seed
            else:
                set_seeds(value, seed)
    elif isinstance(node, list):
        for item in node:
            set_seeds(item, seed)


# ----------------------------------------------------------------------------------------------------- state


def _read_record(folder: Path) -> dict | None:
    path = folder / STAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(folder: Path, fingerprint: str, status: str, outputs: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STAGE_FILE + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "status": status, "outputs": outputs}, indent=2))
    tmp.replace(folder / STAGE_FILE)


def _recorded(cfg: PipelineConfig, stage: str, key: str) -> str | None:
    """An output of a stage finished in an earlier invocation (lets `stages: [student, eval]` reuse it)."""
    record = _read_record(Path(cfg.out_dir) / stage)
    return record["outputs"].get(key) if record and record["status"] == "done" else None


def _check(cfg: PipelineConfig) -> None:
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)} in 'stages'; valid, in order: {', '.join(STAGES)}")
    if [STAGES.index(s) for s in cfg.stages] != sorted({STAGES.index(s) for s in cfg.stages}):
        raise ConfigError(f"'stages' must be in pipeline order without repeats ({', '.join(STAGES)}); "
                          f"got {', '.join(cfg.stages)}")
    bad = [m for m in cfg.eval_models if m != "base" and m not in MODEL_STAGES]
    if bad:
        raise ConfigError(f"eval_models: {', '.join(bad)} produce no model; choose from base, "
                          f"{', '.join(MODEL_STAGES)}")
