"""Parsers of ``apr-sched modify``, ``top``, ``bottom`` and ``graph``."""

from __future__ import annotations

from apr_sched.cli_args import _add_discovery, _command, _key_value

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable

    from apr_sched.cli_args import _Sub


def add_modify(sub: _Sub) -> None:
    p = _command(sub, "modify", help="change a waiting job (or a running one's limit)",
                 description="Change jobs: a PENDING or HELD one's name, priority, limit, "
                             "begin time and resources (it is queued again under them); a "
                             "RUNNING or PAUSED one's priority and limit only.")
    _add_discovery(p)
    p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    p.add_argument("--name", help="a new name ('none' clears it)")
    p.add_argument("--priority", type=int, help="a new priority")
    p.add_argument("--timeout-sec", "--timeout", dest="timeout_sec", metavar="DURATION",
                   help="a new running-time limit (90s, 4h, seconds; 'none' removes it); "
                        "a running job's timer is re-armed, paused time excluded")
    p.add_argument("--begin", metavar="TIME",
                   help="a new begin time (ISO, your local time unless it names a zone, or "
                        "+DURATION; 'none' removes it)")
    p.add_argument("--cpu", type=int, metavar="N", help="cpus it needs")
    p.add_argument("--memory-gb", type=float, metavar="GB", help="memory it needs")
    p.add_argument("--slots", type=int, metavar="N", help="host slots it takes")
    p.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="the labels its host must have (repeatable; replaces the old ones)")


def _mover(action: str, where: str) -> Callable[[_Sub], None]:
    def add(sub: _Sub) -> None:
        p = _command(sub, action, help=f"move pending jobs to the {where} of their priority")
        _add_discovery(p)
        p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    return add


add_top = _mover("top", "front")
add_bottom = _mover("bottom", "back")


def add_graph(sub: _Sub) -> None:
    p = _command(sub, "graph", help="the jobs a job waits for and those waiting for it",
                 description="Print the graph around a job: upstream jobs (what it waits "
                             "for), the job, and downstream jobs (what waits for it), with "
                             "their states and whether each dependency is met.")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="a job id")
    p.add_argument("--depth", type=int, default=2, metavar="N",
                   help="levels each way (default 2)")
