"""The test sshd fixture itself: real OpenSSH servers on 127.0.0.11.., reached with the ssh
client and with asyncssh; kill() drops live sessions, restart() keeps the host key, a
changed host key is refused."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from tests.sshd import SshHost, wrong_known_hosts

SshHosts = Callable[[int], list[SshHost]]  # the ssh_hosts fixture (tests.sshd, via conftest)


def ssh(host: SshHost, command: str, *, known_hosts: Path | None = None,
        timeout: float = 10) -> subprocess.CompletedProcess[str]:
    argv = host.ssh_argv()
    if known_hosts is not None:
        argv = [arg.replace(str(host.known_hosts), str(known_hosts)) for arg in argv]
    return subprocess.run([*argv, command], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def refuses(host: SshHost) -> bool:
    try:
        socket.create_connection((host.address, host.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_ssh_client_runs_a_command_on_two_hosts(ssh_hosts: SshHosts) -> None:
    hosts = ssh_hosts(2)
    assert [h.address for h in hosts] == ["127.0.0.11", "127.0.0.12"]
    assert hosts[0].known_hosts.read_text().startswith(f"[127.0.0.11]:{hosts[0].port} ssh-ed25519 ")
    for host in hosts:
        result = ssh(host, "echo ok; echo $SSH_CONNECTION")
        assert result.returncode == 0, f"{result.stderr}\n{host.log_text}"
        ok, connection = result.stdout.splitlines()
        assert ok == "ok"
        assert connection.split()[2:] == [host.address, str(host.port)]
        assert host.spool.is_dir() and not any(host.spool.iterdir())
    assert hosts[0].prefix.startswith("ssh -o BatchMode=yes -p ")


def test_kill_drops_live_sessions_and_restart_keeps_the_host_key(ssh_hosts: SshHosts) -> None:
    (host,) = ssh_hosts(1)
    known_hosts = host.known_hosts.read_text()
    session = subprocess.Popen([*host.ssh_argv(), "echo started; exec sleep 30"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == "started\n", host.log_text
        remote = host.user_pids()
        assert len(remote) == 1
        host.kill()
        assert session.wait(timeout=5) == 255  # the connection dropped
        assert refuses(host)
        # Like a network cut, the remote command itself survives an sshd crash.
        assert host.user_pids() == remote
    finally:
        session.kill()
        session.wait()
    host.restart()
    assert host.known_hosts.read_text() == known_hosts
    result = ssh(host, "echo ok")  # the same host key still verifies
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    host.stop()
    host.stop()  # idempotent
    assert refuses(host)


def test_ssh_client_refuses_a_changed_host_key(ssh_hosts: SshHosts, tmp_path: Path) -> None:
    (host,) = ssh_hosts(1)
    result = ssh(host, "echo ok", known_hosts=wrong_known_hosts(host, tmp_path / "known_hosts"))
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert "Host key verification failed" in result.stderr
    assert result.stdout == ""


async def test_asyncssh_runs_a_command_and_refuses_a_changed_host_key(
        ssh_hosts: SshHosts, tmp_path: Path) -> None:
    (host,) = ssh_hosts(1)
    async with asyncssh.connect(host.address, host.port, username=host.user,
                                client_keys=[str(host.client_key)],
                                known_hosts=str(host.known_hosts)) as conn:
        result = await conn.run("echo ok", check=True, timeout=10)
        assert result.stdout == "ok\n"
    wrong = wrong_known_hosts(host, tmp_path / "known_hosts")
    # asyncssh says the same for a changed key and for an unknown host.
    for known_hosts in (wrong, tmp_path / "empty"):
        known_hosts.touch()
        with pytest.raises(asyncssh.HostKeyNotVerifiable, match="not trusted"):
            await asyncssh.connect(host.address, host.port, username=host.user,
                                   client_keys=[str(host.client_key)],
                                   known_hosts=str(known_hosts))
