"""The LSF commands (``bsub``, ``bjobs``, ``bkill``, ``bstop``, ``bresume``, ``bpeek``,
``bhosts``, ``bwait``) on top of the daemon client, for flows and EDA tools that drive LSF.

Thin on purpose: options are read here (``bsub.py`` for bsub's), the work is the same client
calls ``apr-sched`` makes, and output follows LSF's layouts (``report.py``) because tools
parse it (``Job <N> is submitted to queue <normal>.``). As in LSF, a command that fails
prints one line on stderr and exits 255; ``bsub -K`` exits as ``apr-sched wait`` does (the
job's own code, 128+N for signal N, 201 TIMEOUT, 202 STOPPED, ...: ``waiting.EXIT_CODES``).
"""

from __future__ import annotations

import os
import signal
import sys

from apr_sched.discovery import find_daemon
from apr_sched.errors import AprError
from apr_sched.rawclient import RawClient, json_object
from apr_sched.statehome import state_dir_name
from apr_sched.states import JobStatus
from apr_sched.views import JobView, job_views

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

__all__ = ["COMMANDS", "main"]

FAILED = 255
_UNFINISHED = ("PENDING", "HELD", "RUNNING", "PAUSED")
_FINISHED = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED")
_PAGE = 500


class _Interrupted(BaseException):
    """A signal to a waiting command (a BaseException, so no client retry swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _client() -> RawClient:
    """The daemon, answering with raw JSON: a shim builds no models (no pydantic), so a
    flow step that runs one pays only for the interpreter and a few small modules."""
    url, token = find_daemon(None, None, None, state_dir_name(None))
    return RawClient(url, token)


def _say(line: str) -> None:
    print(line, flush=True)


def _fail(command: str, message: str) -> int:
    print(f"{command}: {message}", file=sys.stderr, flush=True)
    return FAILED


# bsub -----------------------------------------------------------------------------------
def bsub(argv: Sequence[str]) -> int:
    from apr_sched.lsf.bsub import LsfUsageError, names_command, parse_bsub

    script = None
    if not names_command(argv) and not sys.stdin.isatty():
        script = sys.stdin.read()
    try:
        submission = parse_bsub(argv, script=script, cwd=os.getcwd(), environ=os.environ)
    except LsfUsageError as exc:
        return _fail("bsub", str(exc))
    spec = submission.spec
    spec["umask"] = _umask()
    with _client() as client:
        # -K: the reply's event number (Last-Event-Seq) is where the wait follows on from
        reply, since = client.submit_dict(spec)
        job = JobView(reply)
        _say(f"Job <{job.job_id}> is submitted to queue <{submission.queue}>.")
        for note in submission.notes:
            print(f"bsub: {note}", file=sys.stderr, flush=True)
        if not submission.wait:
            return 0
        return _wait_for(client, job, since)


def _umask() -> str:
    mask = os.umask(0)
    os.umask(mask)
    return f"{mask:03o}"


def _wait_for(client: RawClient, submitted: JobView, since: int | None) -> int:
    """``bsub -K``: LSF's progress lines, then the job's outcome as the exit code; a signal
    to bsub kills the job first, as LSF's does."""
    from apr_sched.lsf.watch import JobWatch
    from apr_sched.outcomes import exit_code_for

    _say("<<Waiting for dispatch ...>>")
    started = False
    watch = JobWatch(client, [submitted.job_id], since=since, known=[submitted])
    with _stop_on_signals(client, [submitted.job_id]):
        for job in watch.changes():
            if not started and job.started_at is not None:
                started = True
                _say(f"<<Starting on {job.host_id}>>")
            if job.status.is_final:
                _say("<<Job is finished>>")
                return exit_code_for(job)
    return FAILED


class _stop_on_signals:
    """SIGINT/SIGTERM/SIGHUP while waiting: stop the jobs, then exit 128+N."""

    def __init__(self, client: RawClient, job_ids: list[str]) -> None:
        self.client, self.job_ids = client, job_ids
        self.previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[signum] = signal.signal(signum, self._raise)

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if isinstance(exc, _Interrupted):
            self.client.close()  # the signal may have cut a reply short on that connection
            for job_id in self.job_ids:
                try:
                    job = JobView(self.client.job_dict(job_id))
                    if not job.status.is_final:
                        self.client.act(job_id, "stop")
                        print(f"Job <{job_id}> is being terminated", file=sys.stderr,
                              flush=True)
                except AprError as error:
                    print(f"Job <{job_id}>: cannot stop it: {error.message}",
                          file=sys.stderr, flush=True)
            raise SystemExit(128 + exc.signum)


# bjobs ----------------------------------------------------------------------------------
def bjobs(argv: Sequence[str]) -> int:
    from apr_sched.lsf.report import bjobs_lines, bjobs_long

    flags: set[str] = set()
    user: str | None = os.environ.get("USER") or _login()
    name: str | None = None
    ids: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-a", "-l", "-w", "-p", "-r", "-s", "-d", "-noheader", "-W"):
            flags.add(word)
        elif word in ("-u", "-J"):
            if not words:
                return _fail("bjobs", f"option {word} needs a value")
            value = words.pop(0)
            if word == "-u":
                user = None if value == "all" else value
            else:
                name = value
        elif word.startswith("-"):
            return _fail("bjobs", f"unknown or unsupported option {word}")
        else:
            ids.append(word)
    with _client() as client:
        if ids:
            jobs, missing = _jobs_by_id(client, ids)
        else:
            jobs, missing = list(_listed(client, flags, user, name)), []
        for job_id in missing:
            print(f"Job <{job_id}> is not found", file=sys.stderr, flush=True)
        if not jobs:
            if not missing:
                what = "job" if "-a" in flags or "-d" in flags else "unfinished job"
                print(f"No {what} found", file=sys.stderr, flush=True)
            return FAILED if missing else 0
        if "-l" in flags:
            for index, job in enumerate(jobs):
                if index:
                    _say("-" * 78)
                for line in bjobs_long(job):
                    _say(line)
        else:
            for line in bjobs_lines(jobs, wide="-w" in flags or "-W" in flags,
                                    header="-noheader" not in flags):
                _say(line)
    return FAILED if missing else 0


def _login() -> str | None:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return None


def _jobs_by_id(client: RawClient, ids: list[str]) -> tuple[list[JobView], list[str]]:
    jobs, missing = [], []
    for job_id in ids:
        try:
            jobs.append(JobView(client.job_dict(job_id)))
        except AprError:
            missing.append(job_id)
    return jobs, missing


def _listed(client: RawClient, flags: set[str], user: str | None,
            name: str | None) -> Iterator[JobView]:
    """The jobs LSF's bjobs would list: unfinished by default; -a adds finished ones, -d
    lists only those; -p/-r/-s narrow to pending/running/suspended."""
    statuses: list[str] = list(_UNFINISHED)
    if "-d" in flags:
        statuses = list(_FINISHED)
    elif "-a" in flags:
        statuses = [*_UNFINISHED, *_FINISHED]
    narrowed = {"-p": ("PENDING", "HELD"), "-r": ("RUNNING",), "-s": ("PAUSED", "HELD")}
    chosen = [s for flag, group in narrowed.items() if flag in flags for s in group]
    if chosen:
        statuses = [s for s in statuses if s in chosen]
    offset = 0
    while True:
        reply = json_object(client.request("GET", "/jobs", query={
            "status": ",".join(statuses), "owner": user, "limit": _PAGE,
            "offset": offset or None})[1])
        jobs = job_views(reply)
        for job in jobs:
            if name is None or job.name == name:
                yield job
        offset += len(jobs)
        if not jobs or offset >= int(reply.get("total", 0)):
            return


# bkill, bstop, bresume ------------------------------------------------------------------
_STOP_SIGNALS = {"STOP", "TSTP", "SIGSTOP", "SIGTSTP", "17", "19", "20"}
_CONT_SIGNALS = {"CONT", "SIGCONT", "18"}
_KILL_SIGNALS = {"KILL", "TERM", "INT", "SIGKILL", "SIGTERM", "SIGINT", "9", "15", "2"}


def bkill(argv: Sequence[str]) -> int:
    words = list(argv)
    action, verb = "stop", "terminated"
    if words[:1] == ["-s"]:
        if len(words) < 2:
            return _fail("bkill", "option -s needs a signal")
        sig = words[1].upper()
        words = words[2:]
        if sig in _STOP_SIGNALS:
            action, verb = "pause", "stopped"
        elif sig in _CONT_SIGNALS:
            action, verb = "resume", "resumed"
        elif sig not in _KILL_SIGNALS:
            return _fail("bkill", f"-s {sig}: only KILL/TERM/INT (end the job), STOP/TSTP "
                                  "(pause) and CONT (resume) are supported")
    return _control("bkill", words, action, verb)


def bstop(argv: Sequence[str]) -> int:
    return _control("bstop", list(argv), "pause", "stopped")


def bresume(argv: Sequence[str]) -> int:
    return _control("bresume", list(argv), "resume", "resumed")


def _control(command: str, ids: list[str], action: str, verb: str) -> int:
    unknown = [w for w in ids if w.startswith("-")]
    if unknown:
        return _fail(command, f"unknown or unsupported option {unknown[0]}")
    if not ids:
        return _fail(command, "name a job id (0 means all your unfinished jobs)")
    failed = False
    with _client() as client:
        if ids == ["0"]:
            ids = [j.job_id for j in _listed(client, set(), _login(), None)]
            if not ids:
                print("No unfinished job found", file=sys.stderr, flush=True)
                return 0
        for job_id in ids:
            try:
                client.act(job_id, action)
            except AprError as exc:
                failed = True
                print(f"Job <{job_id}>: {exc.message}", file=sys.stderr, flush=True)
                continue
            _say(f"Job <{job_id}> is being {verb}")
    return FAILED if failed else 0


# bpeek, bhosts, bwait -------------------------------------------------------------------
def bpeek(argv: Sequence[str]) -> int:
    words = list(argv)
    follow = "-f" in words
    words = [w for w in words if w != "-f"]
    if len(words) != 1 or words[0].startswith("-"):
        return _fail("bpeek", "usage: bpeek [-f] JOB_ID")
    job_id = words[0]
    with _client() as client:
        job = JobView(client.job_dict(job_id))
        if job.status in (JobStatus.PENDING, JobStatus.HELD):
            return _fail("bpeek", f"Job <{job_id}> : Not yet started.")
        _say("<< output from stdout >>")
        if follow:
            from apr_sched.waiting import follow_log

            return follow_log(client, job_id, job.attempt, 0, output=sys.stdout,
                              pinned=False)
        else:
            reply = client.logs(job_id, tail=200)
            sys.stdout.write("".join(f"{line}\n" for line in reply.get("lines") or []))
            sys.stdout.flush()
    return 0


def bhosts(argv: Sequence[str]) -> int:
    from apr_sched.client import SchedulerClient
    from apr_sched.lsf.report import bhosts_lines

    words = list(argv)
    header = "-noheader" not in words
    names = [w for w in words if w != "-noheader" and w != "-w"]
    if any(w.startswith("-") for w in names):
        return _fail("bhosts", f"unknown or unsupported option "
                               f"{next(w for w in names if w.startswith('-'))}")
    with _client() as raw, SchedulerClient(raw.url, raw.token) as client:
        hosts = client.list_hosts()
    if names:
        missing = sorted(set(names) - {h.host_id for h in hosts})
        if missing:
            return _fail("bhosts", f"{missing[0]}: Bad host name, host group name or "
                                   "cluster name")
        hosts = [h for h in hosts if h.host_id in names]
    for line in bhosts_lines(hosts, header=header):
        _say(line)
    return 0


def bwait(argv: Sequence[str]) -> int:
    """``bwait -w CONDITION [-t MINUTES]``: block until the condition holds (exit 0), can
    never hold any more (exit 1, as LSF), or the timeout passes (exit 255)."""
    from apr_sched.lsf.bsub import LsfUsageError
    from apr_sched.lsf.conditions import parse_condition
    from apr_sched.lsf.watch import JobWatch

    words = list(argv)
    expression, timeout = None, None
    while words:
        word = words.pop(0)
        if word in ("-w", "-t") and not words:
            return _fail("bwait", f"option {word} needs a value")
        if word == "-w":
            expression = words.pop(0)
        elif word == "-t":
            value = words.pop(0)
            if not value.isdigit():
                return _fail("bwait", f"-t {value}: needs whole minutes")
            timeout = int(value) * 60.0
        else:
            return _fail("bwait", f"unknown or unsupported option {word}")
    if expression is None:
        return _fail("bwait", "give the wait condition with -w, e.g. -w \"done(12)\"")
    try:
        condition = parse_condition(expression)
    except LsfUsageError as exc:
        return _fail("bwait", str(exc))
    with _client() as client:
        states = {}
        for job_id in condition.job_ids():
            try:
                states[job_id] = JobStatus(client.job_dict(job_id)["status"])
            except AprError as exc:
                return _fail("bwait", f"job {job_id}: {exc.message}")
        watch = JobWatch(client, sorted(states), timeout=timeout)
        try:
            for job in watch.changes():
                states[job.job_id] = job.status
                verdict = condition.evaluate(states)
                if verdict is True:
                    return 0
                if verdict is False:
                    print("bwait: Wait condition is never satisfied", file=sys.stderr,
                          flush=True)
                    return 1
        except TimeoutError:
            return _fail("bwait", "Wait condition is not satisfied within the time limit")
    return FAILED


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "bsub": bsub, "bjobs": bjobs, "bkill": bkill, "bstop": bstop, "bresume": bresume,
    "bpeek": bpeek, "bhosts": bhosts, "bwait": bwait,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m apr_sched.lsf NAME ARGS...``: what the shim scripts run."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        return _fail("apr_sched.lsf", f"name one of {', '.join(COMMANDS)}")
    name, rest = args[0], args[1:]
    try:
        return COMMANDS[name](rest)
    except AprError as exc:
        return _fail(name, exc.message)

    except KeyboardInterrupt:
        return 130
