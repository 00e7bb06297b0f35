"""apr_tui: the full-screen terminal UI of apr_sched (htop/k9s for APR jobs).

    app = make_app(InProcessBackend(Scheduler(state_dir)))   # or AttachedBackend(url, token)
    app.run()

``apr-tui`` / ``python -m apr_tui`` builds the backend from the command line (see ``cli``).
The dependency points one way: apr_tui imports apr_sched, never the reverse.
"""

from apr_tui.app import AprTui, make_app
from apr_tui.backend import AttachedBackend, Backend, InProcessBackend

__all__ = ["AprTui", "AttachedBackend", "Backend", "InProcessBackend", "make_app"]
