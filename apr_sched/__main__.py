"""``python -m apr_sched``: the headless daemon when no command is given (``apr-sched``
alone prints its help instead), else any ``apr-sched`` command (see ``apr_sched.cli``)."""

import sys

from apr_sched.cli import main

if __name__ == "__main__":
    sys.exit(main(default_command="serve"))
