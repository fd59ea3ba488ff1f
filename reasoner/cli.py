"""The `reasoner` command: `reasoner <stage> [--config FILE] [key=value ...]`.

Each stage lives in its own module under `reasoner.commands` (imported only when used, so `reasoner --help` is
fast) with `configure(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("reasoner.commands.demo", "the built-in CPU demo: tiny model, SFT warm start, GRPO, eval"),
    "train": ("reasoner.commands.train", "GRPO training"),
    "sft": ("reasoner.commands.sft", "supervised fine-tuning (loss on response tokens)"),
    "dpo": ("reasoner.commands.dpo", "preference optimisation from (prompt, chosen, rejected) pairs: DPO, IPO"),
    "eval": ("reasoner.commands.eval", "evaluate a model on benchmarks: pass@k, maj@k, lengths"),
    "distill": ("reasoner.commands.distill", "rejection-sampling distillation: verified teacher traces -> SFT data"),
    "rm": ("reasoner.commands.rm", "train a Bradley-Terry reward model on preference pairs"),
    "merge": ("reasoner.commands.merge", "linear weight averaging of checkpoints (A B --weights 0.5 0.5)"),
    "pipeline": ("reasoner.commands.pipeline", "the R1 recipe from one YAML: SFT -> GRPO -> distill -> SFT -> eval"),
    "serve": ("reasoner.commands.serve", "a vLLM rollout server that trainers push weights to"),
    "push": ("reasoner.commands.push", "upload a saved model and its model card to the Hugging Face Hub"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="reasoner", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors (before the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=text, description=text) for name, (_, text) in COMMANDS.items()}
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:  # only the chosen stage's module is imported
        _module(command).configure(parsers[command])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from reasoner.errors import ReasonerError
    _quiet_libraries()
    try:
        return int(_module(args.command).run(args) or 0)
    except ReasonerError as e:
        if args.debug:
            raise
        print(f"reasoner {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"reasoner {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _module(command: str):
    return importlib.import_module(COMMANDS[command][0])


def _quiet_libraries() -> None:
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
