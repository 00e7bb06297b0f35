"""Parsers of ``apr-sched jobs``, ``job``, ``status`` and ``logs``."""

from __future__ import annotations

from apr_sched.cli_args import _add_discovery, _command

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from apr_sched.cli_args import _Sub


def add_jobs(sub: _Sub) -> None:
    from apr_sched import cli_format

    p = _command(sub, "jobs", help="list jobs",
                 description="List jobs in submit order. Piped, the table is plain columns, "
                             "one line per job, never wrapped or cut; the 'N of M shown' note "
                             "then goes to stderr.")
    _add_discovery(p)
    p.add_argument("--status", action="extend", nargs="+", metavar="STATUS",
                   help="only these states: --status RUNNING PAUSED, repeated, or "
                        "comma-separated")
    p.add_argument("--project", help="only this project's jobs")
    p.add_argument("--design", help="only this design's jobs")
    p.add_argument("--owner", help="only this user's jobs")
    p.add_argument("--host", metavar="HOST_ID", help="only jobs on this host")
    p.add_argument("--limit", type=int, metavar="N",
                   help="at most N jobs (default 500, at most 5000)")
    p.add_argument("--offset", type=int, metavar="N", help="skip the first N matching jobs")
    p.add_argument("-o", "--output", type=cli_format.job_columns, metavar="COLUMNS",
                   default=list(cli_format.DEFAULT_JOB_COLUMNS),
                   help="columns to show, comma-separated, from: "
                        f"{','.join(cli_format.JOB_COLUMNS)} (default: "
                        f"{','.join(cli_format.DEFAULT_JOB_COLUMNS)})")
    p.add_argument("--noheader", action="store_true", help="no header line")


def add_job(sub: _Sub) -> None:
    p = _command(sub, "job", help="one job: fields, attempts and event timeline")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")


def add_status(sub: _Sub) -> None:
    p = _command(sub, "status", help="one word per job: running, success or failed",
                 description="Print one word per job, in the order given: running (any "
                             "unfinished state: PENDING, HELD, RUNNING, PAUSED), success "
                             "(SUCCEEDED) or failed (FAILED, TIMEOUT, STOPPED, CANCELLED), as the "
                             "cluster status commands of workflow engines expect. A job the "
                             "daemon does not know (never was, or purged) is 'failed' "
                             "(UNKNOWN with --detail), with a note on stderr. Exit 0 unless "
                             "the daemon cannot be asked.")
    _add_discovery(p, json_help="print {id: status word or null} as JSON")
    p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    p.add_argument("--detail", action="store_true",
                   help="print the real status word (PENDING, RUNNING, SUCCEEDED, ...)")


def add_logs(sub: _Sub) -> None:
    p = _command(sub, "logs", help="print a job's output")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")
    p.add_argument("-n", "--tail", type=int, default=200, metavar="N",
                   help="the last N lines (default 200)")
    p.add_argument("--attempt", type=int, metavar="N", help="default: the latest attempt")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines as the job writes them, until it has ended")
