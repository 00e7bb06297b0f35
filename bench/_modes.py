"""The ways a client command can find our code, for the start-up benchmarks, and a copy
of apr_sched installed as users get it.

- ``source``: the dev venv as it is. In an editable install under
  PYTHONDONTWRITEBYTECODE=1 (this repo's CI and dev machines) no ``.pyc`` is ever written,
  so every start compiles each of our modules from source again;
- ``bytecode``: the dev venv with our modules compiled once (a temporary
  PYTHONPYCACHEPREFIX, warmed by the first run), the editable hook still loaded;
- ``installed``: a venv of its own with a plain ``pip install`` of this repo (below).
Each mode's floor is ``python -c pass`` of its own interpreter with its own environment.

The dev venv is an editable install: its ``__editable___apr_sched_*_finder`` ``.pth`` hook
runs at every Python start (tens of milliseconds, in ``python -c pass`` too), and under
PYTHONDONTWRITEBYTECODE=1 no ``.pyc`` is ever written. Neither is what a user who ran
``pip install apr_sched`` has. So the benchmarks also measure ``installed`` mode: a venv of
its own (no system site-packages) with a plain, non-editable ``pip install`` of this repo,
byte-compiled by pip at install time, and its own ``python -c pass`` as the floor.

Building it takes a minute (pip resolves the dependencies from the configured index), so
it is kept between runs: in ``$TMPDIR/apr_sched_bench_<uid>/installed`` (owner-only),
stamped with a hash of the sources; a run whose sources hash the same reuses it, one whose
package files changed reinstalls the package alone (``--no-deps``), one whose
pyproject.toml changed (the dependencies may have) builds the venv afresh.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("apr_sched", "apr_tui")
"""The package directories whose files make up the installed package."""
STAMP = "apr_sched_source_hash"
MODES = ("source", "bytecode", "installed")
DEV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Mode:
    """One way to run the client: its interpreter's ``bin`` directory and environment."""

    name: str
    bin: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def apr_sched(self) -> list[str]:
        """The ``apr-sched`` script of this mode (what users run)."""
        return [str(self.bin / "apr-sched")]

    def suffix(self) -> str:
        """How its metrics are named: ``status_ms`` (source), ``status_bytecode_ms`` ..."""
        return "" if self.name == "source" else f"_{self.name}"


def build_modes(names: Sequence[str], base_env: Mapping[str, str], pycache: Path,
                installed: Path | None = None) -> dict[str, Mode]:
    """The modes in ``names``, each with ``base_env`` adjusted: its ``bin`` first on PATH
    (so ``apr-sched`` and the LSF shims it writes are its own), bytecode settings."""
    modes = {}
    for name in names:
        env = dict(base_env)
        bin_dir = DEV_BIN
        if name == "bytecode":
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(pycache)
        elif name == "installed":
            bin_dir = installed_venv(installed) / "bin"
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's shell: pip compiled it
        elif name != "source":
            raise SystemExit(f"unknown mode {name!r} (known: {', '.join(MODES)})")
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
        modes[name] = Mode(name, bin_dir, env)
    return modes


def mode_names(text: str) -> list[str]:
    """``--modes source,installed`` as a list (checked)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in MODES]
    if unknown or not names:
        raise SystemExit(f"--modes: unknown {unknown} (known: {', '.join(MODES)})")
    return names


def source_hash(repo: Path = REPO) -> str:
    """A hash of what ``pip install`` would install: pyproject.toml and every package file
    (bytecode caches left out)."""
    digest = hashlib.sha256()
    files = [repo / "pyproject.toml"]
    for package in SOURCES:
        files += sorted(p for p in (repo / package).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / f"apr_sched_bench_{os.getuid()}"


def _own_dir(path: Path) -> Path:
    """``path`` created owner-only, or refused if it is someone else's or open to others
    (we are about to run the code in it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SystemExit(f"{path}: not an owner-only directory of ours; remove it or pass "
                         "another --installed-venv")
    return path


def _pip(venv: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *args],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def installed_venv(venv: Path | None = None, repo: Path = REPO) -> Path:
    """The venv with this repo installed non-editable, built or refreshed as needed; its
    ``bin/python`` and ``bin/apr-sched`` are what installed mode runs."""
    venv = venv or _own_dir(default_root()) / "installed"
    project = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    wanted = f"{project} {source_hash(repo)}"
    stamp = venv / STAMP
    stamped = stamp.read_text().split() if stamp.exists() else []
    if stamped == wanted.split():
        return venv
    fresh = not (venv / "bin" / "python").exists() or stamped[:1] != [project]
    if fresh:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        os.chmod(venv, 0o700)
    stamp.unlink(missing_ok=True)
    print(f"# installing {repo} into {venv} ({'fresh' if fresh else 'sources changed'})",
          file=sys.stderr, flush=True)
    if fresh:
        _pip(venv, str(repo))
    else:  # the dependencies are there: the package alone, rebuilt from the sources
        _pip(venv, "--no-deps", "--force-reinstall", str(repo))
    if not (venv / "bin" / "apr-sched").exists():
        raise SystemExit(f"{venv}: pip left no apr-sched script")
    stamp.write_text(wanted + "\n")
    return venv


def is_editable(python: str | Path) -> bool:
    """Whether ``python``'s environment finds apr_sched through an editable-install hook."""
    code = ("import sys; print(any(str(getattr(f, '__module__', '')).startswith('__editable__')"
            " for f in sys.meta_path))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() == "True"
