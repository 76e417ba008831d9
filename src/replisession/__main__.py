"""``python -m replisession``: the same as the ``replisession`` command."""

import sys

from .cli import main

sys.exit(main())
