"""``python -m daemon`` is the ``recruitmail`` command."""

import sys

from daemon.cli import main

sys.exit(main())
