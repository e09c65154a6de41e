"""`python -m spout`: the same as the `spout` command."""

import sys

from .cli import main

sys.exit(main())
