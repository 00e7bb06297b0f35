"""``python -m apr_sched``: the headless daemon (see ``apr_sched.cli``)."""

import sys

from apr_sched.cli import main

if __name__ == "__main__":
    sys.exit(main())
