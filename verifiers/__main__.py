"""`python -m verifiers score IN.jsonl --out OUT.jsonl --kind math`: see verifiers/cli.py."""
import sys

from .cli import main

sys.exit(main())
