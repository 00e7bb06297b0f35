"""Where and how to reach a native SSH host: from ``ssh = "user@host[:port]"`` fields, or
from a seed-style ``executor_prefix`` that is a plain ``ssh`` command line.

A prefix is taken over only when every word of it is understood (``-p``, ``-i``, ``-l``,
``-o Key=value`` and one ``[user@]host``); anything else (``-J``, ``-t``, a command after the
host, a wrapper script) stays a generic prefix, run as it is.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from apr_sched.models import HostSpec

SAFE_OPTIONS = {
    "batchmode", "connecttimeout", "identityfile", "port", "user", "userknownhostsfile",
    "stricthostkeychecking", "serveraliveinterval", "serveralivecountmax", "loglevel",
    "identitiesonly", "passwordauthentication", "pubkeyauthentication", "compression",
}
"""ssh -o options we can honour natively (or safely ignore: BatchMode is how we work anyway)."""


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    """None: the user's ~/.ssh/known_hosts."""
    check_host_key: bool = True
    connect_timeout_sec: float = 10.0
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"


def parse_address(text: str) -> tuple[str | None, str, int | None]:
    """``user@host[:port]`` (IPv6 in brackets) -> (user, host, port)."""
    user, _, hostport = text.rpartition("@")
    port: int | None = None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        port = int(port_text)
    else:
        host = hostport
    if not host:
        raise ValueError(f"no host in {text!r}")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return user or None, host, port


def parse_ssh_prefix(prefix: str) -> SshTarget | None:
    """The target of ``ssh [-p PORT] [-i KEY] [-l USER] [-o K=V ...] [user@]host``, or None."""
    try:
        words = shlex.split(prefix)
    except ValueError:
        return None
    if not words or words[0].rsplit("/", 1)[-1] != "ssh":
        return None
    port: int | None = None
    user = identity = known_hosts = None
    strict = True
    timeout = 10.0
    options: dict[str, str] = {}
    destination = None
    i = 1
    try:
        while i < len(words):
            word = words[i]
            if word in ("-p", "-i", "-l", "-o"):
                value = words[i + 1]
                i += 2
                if word == "-p":
                    port = int(value)
                elif word == "-i":
                    identity = value
                elif word == "-l":
                    user = value
                else:
                    key, sep, val = value.partition("=")
                    if not sep or key.strip().lower() not in SAFE_OPTIONS:
                        return None
                    options[key.strip().lower()] = val.strip()
                continue
            if word.startswith("-") or destination is not None:
                return None
            destination = word
            i += 1
        if destination is None:
            return None
        dest_user, host, dest_port = parse_address(destination)
    except (IndexError, ValueError):
        return None
    user = dest_user or user or options.get("user")
    port = dest_port or port or (int(options["port"]) if "port" in options else 22)
    identity = identity or options.get("identityfile")
    known_hosts = options.get("userknownhostsfile") or known_hosts
    if options.get("stricthostkeychecking", "yes").lower() in ("no", "off"):
        strict = False
    if "connecttimeout" in options:
        timeout = float(options["connecttimeout"])
    return SshTarget(host=host, port=port, user=user, identity_file=identity,
                     known_hosts=known_hosts, check_host_key=strict,
                     connect_timeout_sec=timeout, options=options)


def ssh_target(spec: HostSpec) -> SshTarget | None:
    """How to reach ``spec`` natively over SSH, or None for a local/generic-prefix host."""
    if spec.ssh:
        user, host, port = parse_address(spec.ssh)
        return SshTarget(host=host, port=port or 22, user=user,
                         identity_file=spec.ssh_identity_file,
                         known_hosts=spec.ssh_known_hosts,
                         connect_timeout_sec=spec.ssh_connect_timeout_sec)
    if spec.executor_prefix:
        return parse_ssh_prefix(spec.executor_prefix)
    return None
