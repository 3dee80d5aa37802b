"""``python -m streams`` is ``edume-streams``."""

import sys

from streams.tools.cli import main

sys.exit(main())
