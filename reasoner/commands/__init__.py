"""One module per `reasoner` subcommand: `configure(parser)` and `run(args) -> int`; `reasoner.cli` finds them by
name and imports only the one asked for."""
from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` plus trailing `key=value` overrides, shared by every stage."""
    parser.add_argument("--config", "-c", action="append",
                        help="YAML config file or shipped config name (reasoner/configs); repeat to merge in order")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config values (dotted keys)")
