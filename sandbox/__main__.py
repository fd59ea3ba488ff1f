"""`python -m sandbox ...`: see sandbox/cli.py."""
import sys

from .cli import main

sys.exit(main())
