"""``python -m apr_sched.lsf bsub ...``: what the shims that ``apr-sched lsf-shims`` writes
run."""

import sys

from apr_sched.lsf.commands import main

sys.exit(main())
