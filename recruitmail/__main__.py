"""``python -m recruitmail`` is the ``recruitmail`` command."""

import sys

from recruitmail.daemon.cli import main

sys.exit(main())
