"""One module per `reasoner` subcommand: `configure(parser)` and `run(args) -> int`."""
