"""What apr_tui remembers between runs: the jobs table's columns and the log pane's options.

Headless. One small TOML file, ``$XDG_CONFIG_HOME/apr_tui/settings.toml`` (default
``~/.config/apr_tui/settings.toml``), read with tomllib and written with tomli_w, owner-only
(directory 0700, file 0600), replaced atomically so a crash never leaves half a file::

    [jobs]
    columns = ["id", "name", "project", "owner", "priority", "status", "host", "attempt",
               "time", "reason"]

    [log]
    wrap = false
    error_patterns = ['^\\*\\*ERROR', '^Error', '^ERROR', '^\\[ERROR', '^\\*\\*FATAL']

A file that cannot be read (bad TOML, an unknown field, a column that does not exist, a
pattern that is no regular expression) gives the defaults and a notice naming the field and
why; such a file is never overwritten, so nothing the user wrote is lost. A file that
cannot be written gives a notice too; the change then lasts until the app quits.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from apr_tui.columns import COLUMN_CATALOG, DEFAULT_COLUMNS

SETTINGS_FILE = "settings.toml"

DEFAULT_ERROR_PATTERNS: tuple[str, ...] = (
    r"^\*\*ERROR",  # Cadence Innovus, Genus, Tempus: **ERROR: (IMPLF-200) ...
    r"^Error",  # Synopsys ICC2, DC, PrimeTime: Error: ... (CMD-005)
    r"^ERROR",  # Calibre, Tcl and shell scripts, most other tools
    r"^\[ERROR",  # OpenROAD: [ERROR GRT-0118] ...
    r"^\*\*FATAL",  # Innovus: **FATAL: a crash or an abort
)
"""Lines that start an error message in the logs of common APR tools; ``e``/``E`` in the
log pane jump to the first/last line matching any of them."""


class SettingsError(ValueError):
    """The settings file cannot be used; the message names the file, the field and why."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    wrap: bool = False
    """Wrap long log lines instead of cutting them (``w`` toggles)."""
    error_patterns: tuple[str, ...] = DEFAULT_ERROR_PATTERNS
    """Regular expressions, one per kind of error line (``^`` is the start of a line)."""


@dataclass(frozen=True, slots=True)
class Settings:
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    """Job table columns shown, in order (``c`` opens the chooser)."""
    log: LogSettings = field(default_factory=LogSettings)

    def with_columns(self, columns: tuple[str, ...]) -> Settings:
        return replace(self, columns=validate_columns(list(columns), "jobs.columns"))

    def with_wrap(self, wrap: bool) -> Settings:
        return replace(self, log=replace(self.log, wrap=wrap))

    def to_toml(self) -> dict[str, Any]:
        return {"jobs": {"columns": list(self.columns)},
                "log": {"wrap": self.log.wrap,
                        "error_patterns": list(self.log.error_patterns)}}


def default_settings_path(env: dict[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/apr_tui/settings.toml``, else ``~/.config/apr_tui/settings.toml``
    (a relative ``XDG_CONFIG_HOME`` is ignored, as the XDG spec says)."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "apr_tui" / SETTINGS_FILE


def validate_columns(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SettingsError(f"{where}: must be a list of column names")
    unknown = [name for name in value if name not in COLUMN_CATALOG]
    if unknown:
        raise SettingsError(f"{where}: unknown column {unknown[0]!r} (choose from "
                            f"{', '.join(COLUMN_CATALOG)})")
    if not value:
        raise SettingsError(f"{where}: needs at least one column")
    if len(set(value)) != len(value):
        raise SettingsError(f"{where}: a column is named twice")
    return tuple(value)


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SettingsError(f"{where}: must be a list of regular expressions")
    if not value:
        raise SettingsError(f"{where}: needs at least one pattern")
    for index, pattern in enumerate(value):
        try:
            re.compile(pattern.encode())
        except re.error as exc:
            raise SettingsError(f"{where}[{index}]: not a regular expression: {exc}") from None
    return tuple(value)


def _table(data: dict[str, Any], name: str, keys: set[str]) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{name}: must be a table ([{name}])")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise SettingsError(f"{name}.{unknown[0]}: unknown field (known: "
                            f"{', '.join(sorted(keys))})")
    return table


def parse_settings(data: dict[str, Any]) -> Settings:
    """Settings from the TOML document ``data``; missing fields take their defaults."""
    unknown = sorted(set(data) - {"jobs", "log"})
    if unknown:
        raise SettingsError(f"{unknown[0]}: unknown section (known: jobs, log)")
    jobs = _table(data, "jobs", {"columns"})
    log = _table(data, "log", {"wrap", "error_patterns"})
    settings = Settings()
    if "columns" in jobs:
        settings = replace(settings, columns=validate_columns(jobs["columns"], "jobs.columns"))
    wrap = log.get("wrap", False)
    if not isinstance(wrap, bool):
        raise SettingsError("log.wrap: must be true or false")
    patterns = _patterns(log["error_patterns"], "log.error_patterns") \
        if "error_patterns" in log else DEFAULT_ERROR_PATTERNS
    return replace(settings, log=LogSettings(wrap=wrap, error_patterns=patterns))


class SettingsFile:
    """Settings bound to a file (or to none: ``path=None`` keeps them in memory only, as
    tests and the demo do). ``notice`` says what went wrong, for the user; never raises."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.settings = Settings()
        self.notice: str | None = None
        self._unreadable = False
        """The file exists but could not be used: never overwrite it."""

    @classmethod
    def load(cls, path: Path | None) -> SettingsFile:
        file = cls(path)
        if path is None:
            return file
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # nothing there (yet)
            return file
        except OSError as exc:
            file._refuse(f"cannot read {path}: {exc.strerror or exc}")
            return file
        try:
            file.settings = parse_settings(tomllib.loads(raw.decode("utf-8")))
        except UnicodeDecodeError:
            file._refuse(f"{path}: not UTF-8 text")
        except tomllib.TOMLDecodeError as exc:
            file._refuse(f"{path}: not valid TOML: {exc}")
        except SettingsError as exc:
            file._refuse(f"{path}: {exc}")
        return file

    def _refuse(self, why: str) -> None:
        self._unreadable = True
        self.settings = Settings()
        self.notice = f"settings: {why}; using the defaults (fix or remove the file)"

    def update(self, settings: Settings) -> str | None:
        """Take ``settings`` and save them; what went wrong, if anything (they still apply
        until the app quits)."""
        self.settings = settings
        if self.path is None:
            return None
        if self._unreadable:
            return (f"settings not saved: {self.path} could not be read at start and is "
                    "left as it is (fix or remove it)")
        try:
            write_private(self.path, tomli_w.dumps(settings.to_toml()).encode())
        except OSError as exc:
            return (f"settings not saved: cannot write {self.path}: {exc.strerror or exc} "
                    "(the change lasts until you quit)")
        return None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, the file 0600 and its directory 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600 already
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
