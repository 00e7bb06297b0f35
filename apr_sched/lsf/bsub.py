"""``bsub`` command lines to job specs: the options EDA tools and flow scripts use.

Pure (no I/O): ``parse_bsub(argv, script=..., cwd=..., environ=...)`` returns a ``Submission``
or raises ``LsfUsageError`` naming the option. An option we do not support is refused, never
ignored: a flow that asked for ``-x`` (exclusive) or ``-w`` (a dependency) must not silently
run without it.

Units follow LSF's usual site setting ``LSF_UNIT_FOR_LIMITS=MB``: ``rusage[mem=4000]`` and
``-M 4000`` are megabytes; a suffix (``4G``, ``512M``, ``100K``) says otherwise.

``-w`` maps onto ``depends_on``: ``done(ID)`` (or a bare ID) is ``after_ok``, ``ended(ID)``
``after_any``, ``exit(ID)`` ``after_failed``, all joined by ``&&``; anything else (``||``,
``!``, ``started``, ``exit(ID, op code)``, job names) is refused, naming it. ``-H`` submits
the job held; ``-b [[[year:]month:]day:]hour:minute`` is its begin time, local, the next
such time when no day is given (as LSF).
"""

from __future__ import annotations

import re
import shlex

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from typing import Any

__all__ = ["DEFAULT_QUEUE", "LsfUsageError", "Submission", "names_command", "parse_begin",
           "parse_bsub", "parse_dependency", "parse_memory_mb"]

DEFAULT_QUEUE = "normal"

# Options that take a value, and those that do not (LSF spells them with one dash).
_WITH_VALUE = {"-J", "-n", "-R", "-M", "-o", "-e", "-cwd", "-W", "-P", "-q", "-env", "-sp",
               "-w", "-b"}
_FLAGS = {"-K", "-H"}
_NEVER = {
    "-I": "interactive jobs (-I) are not supported",
    "-Ip": "interactive jobs (-Ip) are not supported",
    "-Is": "interactive jobs (-Is) are not supported",
    "-x": "exclusive jobs (-x) are not supported; ask for the host's cpu with -n",
    "-oo": "-oo (overwrite the output file) is not supported; -o appends",
    "-eo": "-eo (overwrite the error file) is not supported; -e appends",
    "-m": "choosing hosts by name (-m) is not supported; use -R \"select[label==value]\"",
}
_DIRECTIVE = re.compile(r"^#BSUB\s+(.*)$")
_SECTION = re.compile(r"(\w+)\s*\[([^\]]*)\]")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_LABEL_TERM = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*==?\s*\"?([\w.:/-]+)\"?\s*$")
_RUN_LIMIT = re.compile(r"^(?:(\d+):)?(\d+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DEPENDENCY = re.compile(r"^\s*(?:(done|ended|exit)\s*\(\s*([0-9]+)\s*\)|([0-9]+))\s*$")
_CONDITIONS = {"done": "after_ok", "ended": "after_any", "exit": "after_failed"}
_BEGIN = re.compile(r"^\d{1,4}(?::\d{1,2}){1,4}$")
# what describes the submitting shell, not the job (the workdir is sent on its own)
_STAYS_BEHIND = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})
_MAX_ENV_VALUE = 32768


class LsfUsageError(ValueError):
    """A bsub (or bjobs, bkill ...) command line we cannot honour; the message names why."""


class Submission:
    """A parsed bsub: the job spec to send, and what bsub itself must do. (A plain class:
    ``dataclasses`` loads ``inspect``, milliseconds of every ``bsub`` a flow runs.)"""

    __slots__ = ("notes", "queue", "spec", "wait")

    def __init__(self, spec: dict[str, Any], queue: str = DEFAULT_QUEUE, wait: bool = False,
                 notes: list[str] | None = None) -> None:
        self.spec = spec
        self.queue = queue
        self.wait = wait
        """``-K``: block until the job ends and exit with its outcome."""
        self.notes: list[str] = [] if notes is None else notes

    def __repr__(self) -> str:
        return f"Submission({self.spec!r}, queue={self.queue!r}, wait={self.wait!r})"


def parse_bsub(argv: Sequence[str], *, script: str | None, cwd: str,
               environ: Mapping[str, str], now: datetime | None = None) -> Submission:
    """The submission ``bsub argv`` asks for. ``script`` is the job script read from stdin
    when the command line names no command (``bsub < job.sh``); its ``#BSUB`` lines are
    options too, overridden by the command line's. ``now`` (local, default: now) is what
    ``-b`` counts from."""
    options, command = _split(list(argv))
    if not command:
        if script is None or not script.strip():
            raise LsfUsageError("no command: give one after the options, or a job script on "
                                "standard input (bsub < job.sh)")
        options = _directives(script) + options
        command_line = script
    elif len(command) == 1:
        command_line = command[0]
    else:
        command_line = shlex.join(command)
    if now is None:
        from datetime import datetime  # only here: -b counts from now

        now = datetime.now().astimezone()
    return _submission(options, command_line, cwd, environ, now)


def names_command(argv: Sequence[str]) -> bool:
    """Whether the command line names a command (else bsub reads a script from stdin);
    True for a line whose options are wrong, so that the parse reports them."""
    try:
        return bool(_split(list(argv))[1])
    except LsfUsageError:
        return True


def _split(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(option, value) pairs up to the first word that is not an option, and the rest."""
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return options, argv[i + 1:]
        if not word.startswith("-") or word == "-":
            return options, argv[i:]
        if word in _NEVER:
            raise LsfUsageError(_NEVER[word])
        if word in _FLAGS:
            options.append((word, None))
            i += 1
            continue
        if word in _WITH_VALUE:
            if i + 1 >= len(argv):
                raise LsfUsageError(f"option {word} needs a value")
            options.append((word, argv[i + 1]))
            i += 2
            continue
        raise LsfUsageError(f"unknown or unsupported option {word}")
    return options, []


def _directives(script: str) -> list[tuple[str, str | None]]:
    """Options from the script's ``#BSUB`` lines (LSF reads them until the first command)."""
    words: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#BSUB")):
            continue
        match = _DIRECTIVE.match(stripped)
        if match is None:
            break
        try:
            words += shlex.split(match.group(1), comments=True)
        except ValueError as exc:
            raise LsfUsageError(f"cannot read the #BSUB line {stripped!r}: {exc}") from None
    options, rest = _split(words)
    if rest:
        raise LsfUsageError(f"#BSUB line with a stray word {rest[0]!r}")
    return options


def _submission(options: list[tuple[str, str | None]], command: str, cwd: str,
                environ: Mapping[str, str], now: datetime) -> Submission:
    spec: dict[str, Any] = {"command": command, "workdir": cwd}
    request: dict[str, Any] = {}
    labels: dict[str, str] = {}
    result = Submission(spec)
    env_mode = "all"
    rusage_mb: float | None = None
    limit_mb: float | None = None
    for option, value in options:
        if option == "-K":
            result.wait = True
            continue
        if option == "-H":
            spec["hold"] = True
            continue
        assert value is not None
        if option == "-J":
            if "[" in value:
                raise LsfUsageError(f"-J {value}: job arrays are not supported yet")
            spec["name"] = value
        elif option == "-n":
            request["cpu"] = _count(option, value)
        elif option == "-R":
            rusage_mb = _resource_string(value, labels, rusage_mb)
        elif option == "-M":
            limit_mb = parse_memory_mb(value, option)
        elif option == "-o":
            spec["output_path"] = value
        elif option == "-e":
            spec["error_path"] = value
        elif option == "-cwd":
            spec["workdir"] = value if value.startswith("/") else f"{cwd.rstrip('/')}/{value}"
        elif option == "-W":
            spec["timeout_sec"] = _run_limit(value)
        elif option == "-P":
            spec["project"] = value
        elif option == "-q":
            result.queue = value
        elif option == "-env":
            env_mode = value
        elif option == "-sp":
            spec["priority"] = _count(option, value)
        elif option == "-w":
            spec["depends_on"] = parse_dependency(value)
        elif option == "-b":
            spec["begin_at"] = parse_begin(value, now).isoformat()
    memory_mb = max(m for m in (rusage_mb, limit_mb, 0.0) if m is not None)
    if memory_mb:
        request["memory_gb"] = round(memory_mb / 1024, 6)
    if labels:
        request["host_labels"] = labels
    if request:
        spec["resource_request"] = request
    if "error_path" in spec and "output_path" not in spec:
        # LSF: -e alone leaves stdout to the mail; here stdout stays in the scheduler's log
        spec["output_path"] = "/dev/null"
        result.notes.append("-e without -o: stdout is kept in the scheduler's log only")
    spec["env"] = _environment(env_mode, environ)
    return result


def parse_dependency(value: str) -> dict[str, list[str]]:
    """``-w "done(12) && ended(13)"`` -> ``{"after_ok": ["12"], "after_any": ["13"]}``."""
    if "||" in value:
        raise LsfUsageError(f"-w {value!r}: || is not supported; every dependency must hold "
                            "(join them with &&)")
    depends_on: dict[str, list[str]] = {}
    for term in value.split("&&"):
        match = _DEPENDENCY.match(term)
        if match is None:
            raise LsfUsageError(
                f"-w {value!r}: {term.strip()!r} is not supported; use done(ID), ended(ID) "
                "or exit(ID) with numeric job ids, joined by &&")
        kind, job_id, bare = match.groups()
        condition = _CONDITIONS[kind] if kind else "after_ok"
        depends_on.setdefault(condition, []).append(job_id or bare)
    return depends_on


def parse_begin(value: str, now: datetime) -> datetime:
    """``-b [[[year:]month:]day:]hour:minute``, local; without a day, the next such time."""
    text = value.strip()
    if not _BEGIN.match(text):
        raise LsfUsageError(f"-b {value}: needs [[[year:]month:]day:]hour:minute, e.g. 18:30 "
                            "or 12:1:18:30")
    parts = [int(part) for part in text.split(":")]
    *date, hour, minute = parts
    year, month, day = ([now.year, now.month, now.day][: 3 - len(date)] + date)[-3:]
    try:
        when = now.replace(year=year, month=month, day=day, hour=hour, minute=minute,
                           second=0, microsecond=0)
    except ValueError as exc:
        raise LsfUsageError(f"-b {value}: {exc}") from None
    if not date and when <= now:
        from datetime import timedelta

        when += timedelta(days=1)
    return when


def _count(option: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise LsfUsageError(f"{option} {value}: needs a whole number of at least 1")
    return int(value)


def parse_memory_mb(value: str, option: str = "mem") -> float:
    """``4000`` (MB), ``4G``, ``512M``, ``100K``, ``1.5T`` -> megabytes."""
    match = _MEMORY.match(value)
    if match is None:
        raise LsfUsageError(f"{option}={value}: not a memory size (e.g. 4000 for MB, 4G)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return number * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]


def _resource_string(value: str, labels: dict[str, str],
                     rusage_mb: float | None) -> float | None:
    """Fold one ``-R`` string into the request: ``rusage[mem=N]``, ``select[k==v && ...]``,
    ``span[hosts=1]``; a bare string is a select, as in LSF."""
    text = value.strip()
    sections = _SECTION.findall(text)
    if not sections:
        sections = [("select", text)]
    elif _SECTION.sub("", text).strip():
        raise LsfUsageError(f"-R {value!r}: cannot read {_SECTION.sub('', text).strip()!r}")
    for name, body in sections:
        if name == "rusage":
            for term in filter(None, (t.strip() for t in re.split(r"[:,]", body))):
                key, _, amount = term.partition("=")
                if key.strip() != "mem":
                    raise LsfUsageError(f"-R rusage[{term}]: only mem is supported (counted "
                                        "resources such as licenses are not yet)")
                mb = parse_memory_mb(amount.split("/")[0], "rusage mem")
                rusage_mb = max(rusage_mb or 0.0, mb)
        elif name == "select":
            for term in filter(None, (t.strip() for t in body.split("&&"))):
                match = _LABEL_TERM.match(term)
                if match is None:
                    raise LsfUsageError(
                        f"-R select[{body}]: {term!r} is not supported; use label==value "
                        "terms joined by &&, matched against the hosts' labels")
                labels[match.group(1)] = match.group(2)
        elif name == "span":
            if body.replace(" ", "") != "hosts=1":
                raise LsfUsageError(f"-R span[{body}]: only span[hosts=1] is supported "
                                    "(a job always runs on one host)")
        else:
            raise LsfUsageError(f"-R {name}[...]: not supported (rusage, select and "
                                "span[hosts=1] are)")
    return rusage_mb


def _run_limit(value: str) -> float:
    """``-W [hours:]minutes`` -> seconds."""
    match = _RUN_LIMIT.match(value.strip())
    if match is None:
        raise LsfUsageError(f"-W {value}: needs [hours:]minutes, e.g. 90 or 1:30")
    hours, minutes = int(match.group(1) or 0), int(match.group(2))
    if hours * 60 + minutes <= 0:
        raise LsfUsageError(f"-W {value}: the run limit must be at least one minute")
    return float((hours * 60 + minutes) * 60)


def _environment(mode: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``-env``: ``all`` (the default, as LSF), ``none``, ``all, ~NAME``, or ``NAME, NAME``."""
    terms = [t.strip() for t in mode.split(",") if t.strip()]
    if not terms:
        raise LsfUsageError("-env needs all, none, or names")
    if terms == ["none"]:
        return {}
    if terms[0] == "all":
        excluded = set()
        for term in terms[1:]:
            if not term.startswith("~"):
                raise LsfUsageError(f"-env {mode!r}: after all, only ~NAME may follow")
            excluded.add(term[1:])
        return {k: v for k, v in environ.items() if k not in excluded and _travels(k, v)}
    chosen: dict[str, str] = {}
    for term in terms:
        name, eq, value = term.partition("=")
        if eq:
            chosen[name] = value
        elif name in environ:
            chosen[name] = environ[name]
    return {k: v for k, v in chosen.items() if _travels(k, v)}


def _travels(name: str, value: str) -> bool:
    """Whether a variable can be a job's: shell functions (``BASH_FUNC_x%%``), oversized
    values and the shell's own bookkeeping stay behind."""
    return (name not in _STAYS_BEHIND and _ENV_NAME.match(name) is not None
            and len(value) <= _MAX_ENV_VALUE and "\x00" not in value)
