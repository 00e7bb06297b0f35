"""Real OpenSSH servers for tests: one ``sshd -D`` per test host on its own loopback address.

Each host gets a fresh ed25519 host key, a fresh ed25519 client key in its own
authorized_keys, a known_hosts file for ``[address]:port`` and a spool directory. Everything
binds to and connects to 127.0.0.x only.

``kill()`` simulates an sshd crash: the listener and every sshd process serving this host's
connections get SIGKILL, so live connections drop, while the commands those connections
started keep running (as with a network cut), so a scheduler can find its jobs again after
``restart()``. ``user_pids()`` lists those commands; the fixture ends them at teardown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
FIRST_ADDRESS = 11  # hosts live on 127.0.0.11, 127.0.0.12, ...
# Executables that serve connections: sshd itself, and from OpenSSH 9.8/10.0 on the
# per-connection helpers it execs.
SSHD_EXES = frozenset({"sshd", "sshd-session", "sshd-auth"})
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 5


def sshd_missing() -> str | None:
    """Why test sshd hosts cannot run here, or None when they can."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found (Debian package openssh-server)"
    for tool in ("ssh-keygen", "ssh"):
        if not shutil.which(tool):
            return f"{tool} not found (Debian package openssh-client)"
    return None


def require_sshd() -> None:
    """Skip the test when sshd is missing; fail instead under CI=true (CI must not skip)."""
    reason = sshd_missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@functools.cache
def sshd_version() -> tuple[int, int]:
    """OpenSSH (major, minor) of ``SSHD``; (0, 0) when it cannot be told."""
    result = subprocess.run([SSHD, "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stdout + result.stderr)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` and ``path.pub``."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    return path


def _public_key(private: Path) -> str:
    """``"ssh-ed25519 AAAA..."`` (type and blob, no comment) of a key pair's public half."""
    kind, blob = private.with_name(private.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def free_port(address: str) -> int:
    """A port that was free on ``address`` a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def port_accepts(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _poll(predicate: Callable[[], object], timeout: float, what: str,
          details: Callable[[], str] = lambda: "") -> None:
    """Bounded wait for ``predicate``; raises with ``details()`` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s\n{details()}".rstrip())
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# ---- /proc helpers (Linux) ------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie has already closed its sockets)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _is_sshd(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return os.path.basename(exe.removesuffix(" (deleted)")) in SSHD_EXES


def _children() -> dict[int, list[int]]:
    """ppid -> children, for the whole process table."""
    tree: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(pid)
    return tree


def _descendants(roots: set[int]) -> set[int]:
    tree = _children()
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _socket_inodes(address: str, port: int) -> set[str]:
    """Inodes of TCP sockets whose local end is address:port (listening or connected)."""
    local = "{:08X}:{:04X}".format(
        int.from_bytes(socket.inet_aton(address), "little"), port)
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == local and fields[9] != "0":
            inodes.add(fields[9])
    return inodes


def _socket_holders(address: str, port: int) -> set[int]:
    """Processes holding a TCP socket whose local end is address:port."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(address, port)}
    holders: set[int] = set()
    if not wanted:
        return holders
    for pid in _all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    holders.add(pid)
                    break
            except OSError:
                continue
    return holders


def _signal(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# ---- the host -------------------------------------------------------------------------------

@dataclass
class SshHost:
    """One running test sshd and everything a client needs to reach it."""

    name: str                 # e.g. "ssh1"
    address: str              # "127.0.0.11", "127.0.0.12", ...
    port: int                 # unprivileged, free when chosen
    user: str                 # the current user
    client_key: Path          # private ed25519 key; its .pub is in authorized_keys
    known_hosts: Path         # "[address]:port ssh-ed25519 ..." for this host's key
    spool: Path               # a fresh directory to use as this host's remote spool
    workdir: Path             # config, host key, authorized_keys, logs
    quiet_login: bool = True
    """Skip the login user's ~/.bashrc (see _write_files); the benchmark turns this off."""
    login_env: dict[str, str] = field(default_factory=dict)
    """Variables sshd sets in every session (``SetEnv``): a broken login environment, e.g.
    a PATH without python3. Takes effect at the next ``start()``/``restart()``."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _port_pinned: bool = field(default=False, repr=False)

    # -- files --

    @property
    def host_key(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    def _write_files(self) -> None:
        """Keys are made once (a restart keeps them); config and known_hosts follow the port."""
        if not self.host_key.exists():
            keygen(self.host_key)
        if not self.client_key.exists():
            keygen(self.client_key)
        self.authorized_keys.write_text(_public_key(self.client_key) + "\n")
        self.known_hosts.write_text(
            f"[{self.address}]:{self.port} {_public_key(self.host_key)}\n")
        lines = [
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            "Subsystem sftp internal-sftp",
            "MaxSessions 64",
            "MaxStartups 100",
            "LogLevel VERBOSE",
            "ClientAliveInterval 0",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
        ]
        session_env = {}
        if self.quiet_login:
            # bash reads ~/.bashrc when sshd starts it, unless SHLVL is already set. Root's
            # here runs `pyenv init`: ~100 ms per login, and a lock that a login killed
            # mid-startup leaves behind, after which every login waits 60 s. Tests need
            # neither; the benchmark keeps the real login cost.
            session_env["SHLVL"] = "1"
        session_env.update(self.login_env)
        if session_env:  # all on one SetEnv line
            assert not any(c.isspace() or c == '"' for c in "".join(session_env.values()))
            lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in session_env.items()))
        if sshd_version() >= (9, 8):
            # Otherwise sshd refuses a source that opened many connections without
            # authenticating (readiness probes) or whose sessions "crashed" (kill()).
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    # -- lifecycle --

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start ``sshd -D``; return once the port accepts TCP. Before the first success a
        port lost to a race is replaced by a fresh one (and known_hosts rewritten)."""
        if self.running:
            return
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(parents=True, exist_ok=True)
            PRIVSEP_DIR.chmod(0o755)
        for attempt in range(PORT_ATTEMPTS):
            self._write_files()
            mark = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(self.workdir / "sshd.stderr", "ab") as stderr:
                self._proc = subprocess.Popen(
                    [SSHD, "-D", "-f", str(self.config), "-E", str(self.log_file)],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
            proc = self._proc
            _poll(functools.partial(self._up_or_exited, proc, mark), START_TIMEOUT,
                  f"sshd {self.name} on {self.address}:{self.port}", lambda: self.log_text)
            if proc.poll() is None:
                self._port_pinned = True
                return
            self._proc = None
            new_log = self._log_since(mark)
            if self._port_pinned or "Address already in use" not in new_log \
                    or attempt == PORT_ATTEMPTS - 1:
                raise RuntimeError(
                    f"sshd {self.name} exited with {proc.returncode}:\n{self.log_text}")
            self.port = free_port(self.address)

    def _up_or_exited(self, proc: subprocess.Popen[bytes], log_offset: int) -> bool:
        if proc.poll() is not None:
            return True
        # The log line ties the port to this sshd (not to some other listener).
        listening = f"Server listening on {self.address} port {self.port}."
        return listening in self._log_since(log_offset) and port_accepts(self.address,
                                                                          self.port)

    def _connection_sshds(self) -> set[int]:
        """sshd processes serving this host: the listener, its sshd descendants, and any
        sshd still holding a socket on address:port (e.g. sessions orphaned by a killed
        listener)."""
        roots = _socket_holders(self.address, self.port)
        if self._proc is not None and self._proc.poll() is None:
            roots.add(self._proc.pid)
        found = roots | _descendants(roots)
        return {pid for pid in found if _is_sshd(pid) and _alive(pid)}

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        snapshot = self._connection_sshds()  # before the listener dies and its tree scatters
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = {pid for pid in snapshot if _alive(pid)} | self._connection_sshds()
            if not left:
                break
            if time.monotonic() > deadline:
                sig = signal.SIGKILL  # escalate; SIGKILL cannot be ignored
                deadline = time.monotonic() + timeout
            _signal(left, sig)
            snapshot |= left
            time.sleep(0.01)
        self._proc = None
        _poll(lambda: not port_accepts(self.address, self.port), timeout,
              f"port {self.address}:{self.port} refusing", lambda: self.log_text)

    def stop(self) -> None:
        """SIGTERM the listener and this host's sshd session processes and wait (SIGKILL
        after 5 s); open connections drop, the commands they ran keep running. Idempotent."""
        self._end(signal.SIGTERM, STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL the listener and every sshd process serving this host's connections, so
        live connections really drop (the commands they ran keep running); return once the
        port refuses."""
        self._end(signal.SIGKILL, STOP_TIMEOUT)

    def restart(self) -> None:
        """Start again (stopping first if running) on the same address and port, same keys."""
        self.stop()
        self.start()

    def user_pids(self) -> set[int]:
        """Live processes started through this host's sshd (their SSH_CONNECTION names
        address and port), including ones whose connection is gone."""
        wanted = [self.address, str(self.port)]
        pids = set()
        for pid in _all_pids():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            for var in environ.split(b"\0"):
                if var.startswith(b"SSH_CONNECTION="):
                    if var.decode(errors="replace").split()[2:4] == wanted and _alive(pid):
                        pids.add(pid)
                    break
        return pids

    def cleanup(self, grace: float = 2.0) -> None:
        """Stop sshd and end every leftover command it started: SIGTERM, then SIGKILL after
        ``grace`` seconds. SIGTERM first matters: a login shell killed outright while its
        startup files run can leave locks behind (root's ``pyenv rehash`` here leaves
        ~/.pyenv/shims/.pyenv-shim, and every later login then waits 60 s for it)."""
        self.stop()
        pids = self.user_pids()
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.01)
            pids = self.user_pids()
            _signal(pids, signal.SIGTERM)  # children that appeared meanwhile
        for _ in range(100):
            if not pids:
                return
            _signal(pids, signal.SIGKILL)
            time.sleep(0.01)
            pids = self.user_pids()

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_file, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    # -- client side --

    @property
    def log_text(self) -> str:
        """sshd's log (and anything it printed on stderr), for failure messages."""
        text = ""
        for path in (self.log_file, self.workdir / "sshd.stderr"):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", f"{self.user}@{self.address}"]

    @property
    def prefix(self) -> str:
        return shlex.join(self.ssh_argv())

    @property
    def target(self) -> str:
        """``user@address:port`` (the ``ssh =`` form of hosts.toml)."""
        return f"{self.user}@{self.address}:{self.port}"


def make_host(index: int, root: Path, *, quiet_login: bool = True) -> SshHost:
    """Host number ``index`` (0-based) on 127.0.0.(11+index), files under ``root``; not
    started."""
    address = f"127.0.0.{FIRST_ADDRESS + index}"
    root.mkdir(parents=True, exist_ok=True)
    spool = root / "spool"
    spool.mkdir(exist_ok=True)
    return SshHost(name=f"ssh{index + 1}", address=address, port=free_port(address),
                   user=pwd.getpwuid(os.getuid()).pw_name,
                   client_key=root / "id_ed25519", known_hosts=root / "known_hosts",
                   spool=spool, workdir=root, quiet_login=quiet_login)


def wrong_known_hosts(host: SshHost, path: Path) -> Path:
    """Write ``path``: a known_hosts naming a DIFFERENT ed25519 key for the host's
    ``[address]:port`` (as after a host key change)."""
    other = keygen(path.with_name(path.name + ".other_host_key"))
    path.write_text(f"[{host.address}]:{host.port} {_public_key(other)}\n")
    return path


@contextlib.contextmanager
def running_hosts(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[[int], list[SshHost]]]:
    """The body of the ``ssh_hosts`` fixture, for fixtures of other scopes or names."""
    require_sshd()
    hosts: list[SshHost] = []

    def start(count: int) -> list[SshHost]:
        assert len(hosts) + count <= 255 - FIRST_ADDRESS
        new = []
        for _ in range(count):
            index = len(hosts)
            host = make_host(index, tmp_path_factory.mktemp(f"ssh{index + 1}"))
            hosts.append(host)
            host.start()
            new.append(host)
        return new

    try:
        yield start
    finally:
        errors = []
        for host in hosts:
            try:
                host.cleanup()
            except Exception as exc:  # stop every host even if one misbehaves
                errors.append(f"{host.name}: {exc}")
        if errors:
            raise RuntimeError("stopping test sshd hosts:\n" + "\n".join(errors))


@pytest.fixture
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int], list[SshHost]]]:
    """Factory: ``ssh_hosts(3)`` starts three hosts on 127.0.0.11, .12, .13 (a later call
    continues the numbering); all are stopped, and their leftover commands ended, at
    teardown. Skips without sshd (fails under CI=true)."""
    with running_hosts(tmp_path_factory) as start:
        yield start
