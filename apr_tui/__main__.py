"""``python -m apr_tui``: the same as ``apr-tui``."""

import sys

from apr_tui.cli import main

sys.exit(main())
