"""LSF-compatible commands for flows and EDA tools written against LSF.

``apr-sched lsf-shims DIR`` writes ``bsub``, ``bjobs``, ``bkill``, ``bstop``, ``bresume``,
``bpeek``, ``bhosts`` and ``bwait`` into DIR (see ``shims.py``); with DIR first on PATH the
common uses work unchanged. ``bsub.py`` reads bsub's options, ``report.py`` prints LSF's
layouts, ``conditions.py`` judges dependency expressions, ``commands.py`` runs them.
"""

COMMAND_NAMES = ("bsub", "bjobs", "bkill", "bstop", "bresume", "bpeek", "bhosts", "bwait")
"""The commands the shims provide (``commands.COMMANDS`` runs them)."""
