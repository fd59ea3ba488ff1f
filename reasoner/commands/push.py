"""`reasoner push FOLDER REPO_ID [--private] [--revision BRANCH]`: upload a saved model (and its card) to the Hub.

FOLDER is a model folder or a run folder (its `model/` is pushed). Every stage writes the model card
(`README.md`) when it saves the model; the token comes from `hf auth login` or `HF_TOKEN`.
"""
from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("folder", help="a saved model folder, or a run folder with model/ in it")
    parser.add_argument("repo_id", help="the Hub repository, e.g. my-org/qwen-grpo-gsm8k (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="push to this branch (created if missing) instead of main")
    parser.add_argument("--message", help="commit message")


def run(args) -> int:
    from reasoner.models.card import push_model

    url = push_model(args.folder, args.repo_id, private=args.private, revision=args.revision, message=args.message)
    print(f"[push] {args.folder} -> {url}")
    return 0
