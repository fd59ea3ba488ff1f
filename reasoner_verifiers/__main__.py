"""`python -m reasoner_verifiers score IN.jsonl --out OUT.jsonl --kind math`: see reasoner_verifiers/cli.py."""
import sys

from .cli import main

sys.exit(main())
