"""Errors a user can act on. The CLI prints one line for any of them (`reasoner <stage>: error: ...`) and exits
non-zero, with no traceback unless `reasoner --debug <stage> ...`; anything else is a bug and keeps its traceback.

Each names what is wrong — the config key and file, the data file and line, the model path, the checkpoint
file — so the line is enough to fix it.
"""
from __future__ import annotations


class ReasonerError(Exception):
    """Base of every user-facing error."""
