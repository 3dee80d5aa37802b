"""``python -m streams`` is ``edume-streams``."""

import sys

from streams.cli import main

sys.exit(main())
