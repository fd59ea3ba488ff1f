"""One module per `reasoner` subcommand: `configure(parser)` and `run(args) -> int`; `reasoner.cli` finds them by
name and imports only the one asked for."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` plus trailing `key=value` overrides, shared by every stage, and `--print-config`."""
    parser.add_argument("--config", "-c", action="append",
                        help="YAML config file or shipped config name (reasoner/configs); repeat to merge in order")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (every key, with its value or default) and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config values (dotted keys)")
    parser.epilog = ("Every key of the config can be set as key=value (dotted for sections, e.g. optim.lr=1e-6); "
                     "--print-config lists them all with their defaults.")


def stage_config(args: argparse.Namespace, cls: type[T], *, extra: Sequence[str] = (),
                 base: Sequence[str] = ()) -> T | None:
    """The stage's config from `base` files, `--config` files and overrides (`extra` last); None after printing it
    for `--print-config`."""
    from reasoner.config import load_config, to_dict

    cfg = load_config(cls, [*base, *(args.config or [])], [*args.overrides, *extra])
    if getattr(args, "print_config", False):
        import yaml
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return None
    return cfg
